// Failed calls as one error type carrying the service's stable reason (e.g. JOB_NOT_FOUND), read
// from the google.rpc.ErrorInfo in the status details, as the Python SDK's QschedError does.
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export { Code };

export class QschedError extends Error {
  constructor(
    /** The gRPC status code. */
    readonly code: Code,
    /** The service's UPPER_SNAKE reason, "" when the error carries none. */
    readonly reason: string,
    /** The server's message. */
    readonly detail: string,
    /** ErrorInfo metadata (e.g. `index` for SubmitJobs). */
    readonly metadata: Record<string, string> = {},
  ) {
    super(reason ? `${Code[code]} ${reason}: ${detail}` : `${Code[code]}: ${detail}`);
    this.name = "QschedError";
  }

  static from(error: unknown): QschedError {
    if (error instanceof QschedError) return error;
    const connect = ConnectError.from(error);
    for (const detail of connect.details) {
      if ("type" in detail && detail.type === "google.rpc.ErrorInfo") {
        const info = decodeErrorInfo(detail.value);
        return new QschedError(connect.code, info.reason, connect.rawMessage, info.metadata);
      }
    }
    return new QschedError(connect.code, "", connect.rawMessage);
  }
}

/** google.rpc.ErrorInfo: reason = 1, domain = 2, metadata = 3 (map<string, string>). */
function decodeErrorInfo(bytes: Uint8Array): { reason: string; metadata: Record<string, string> } {
  const reader = new BinaryReader(bytes);
  let reason = "";
  const metadata: Record<string, string> = {};
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      reason = reader.string();
    } else if (field === 3 && wireType === WireType.LengthDelimited) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1) key = entry.string();
        else if (f === 2) value = entry.string();
        else entry.skip(w);
      }
      metadata[key] = value;
    } else {
      reader.skip(wireType);
    }
  }
  return { reason, metadata };
}
