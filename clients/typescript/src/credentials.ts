// Where the scheduler is and who the caller is: the same rules as the Python SDK
// (clients/python/qsched/credentials.py and connection.py), so one token file serves both.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const DEFAULT_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_DEVICE = "qick";

/** The config dir: $QSCHED_CONFIG_DIR, else $XDG_CONFIG_HOME/qsched, else ~/.config/qsched. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QSCHED_CONFIG_DIR) return expandHome(env.QSCHED_CONFIG_DIR);
  const base = env.XDG_CONFIG_HOME ? expandHome(env.XDG_CONFIG_HOME) : join(homedir(), ".config");
  return join(base, "qsched");
}

/** $QSCHED_TOKEN_FILE, else <config dir>/token (the file `qsched up` and `qsched login` write). */
export function tokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.QSCHED_TOKEN_FILE ? expandHome(env.QSCHED_TOKEN_FILE) : join(configDir(env), "token");
}

/** The caller's bearer token, first found wins: `explicit`, $QSCHED_TOKEN, the token file; "" if none. */
export function findToken(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit?.trim()) return explicit.trim();
  if (env.QSCHED_TOKEN?.trim()) return env.QSCHED_TOKEN.trim();
  try {
    return readFileSync(tokenFile(env), "utf8").trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
}

/** `explicit`, else $QSCHED_ADDRESS, else 127.0.0.1:50051; a leading http:// or grpc:// is dropped. */
export function schedulerAddress(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  let address = explicit || env.QSCHED_ADDRESS || DEFAULT_ADDRESS;
  for (const prefix of ["http://", "https://", "grpc://"]) {
    if (address.startsWith(prefix)) address = address.slice(prefix.length);
  }
  return address.replace(/\/+$/, "");
}

export interface Tls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** TLS from $QSCHED_TLS_CA (setting it switches to TLS) and $QSCHED_TLS_CERT / $QSCHED_TLS_KEY (mutual TLS). */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): Tls | undefined {
  if (!env.QSCHED_TLS_CA) return undefined;
  return {
    ca: readFileSync(env.QSCHED_TLS_CA),
    cert: env.QSCHED_TLS_CERT ? readFileSync(env.QSCHED_TLS_CERT) : undefined,
    key: env.QSCHED_TLS_KEY ? readFileSync(env.QSCHED_TLS_KEY) : undefined,
  };
}

function expandHome(path: string): string {
  return path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
}
