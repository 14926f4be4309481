"""The HTML shells: the server renders the frame, static/app.js fills it from the event streams.
Everything is served from this package; nothing is loaded from outside at run time."""

from __future__ import annotations

from html import escape
from typing import Any


def _frame(title: str, page: str, body: str, user: dict[str, Any] | None = None, extra: str = "") -> str:
    who = ""
    if user is not None:
        roles = ", ".join(r.removeprefix("ROLE_").lower() for r in user.get("roles", []))
        who = (
            f'<span id="who">{escape(user.get("name", ""))}'
            f"{f' ({escape(roles)})' if roles else ''}</span>"
            '<form method="post" action="/logout"><button type="submit">Log out</button></form>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · qsched</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body data-page="{page}"{extra}>
<header><a href="/" class="brand">qsched</a>{who}</header>
<p id="notice" role="alert" hidden></p>
<main>{body}</main>
<script src="/static/app.js"></script>
</body></html>"""


def login(error: str = "") -> str:
    line = f'<p class="refused">{escape(error)}</p>' if error else ""
    body = f"""<h1>Log in</h1>{line}
<form method="post" action="/login" id="login">
<label>Your qsched token <input type="password" name="token" autocomplete="off" required autofocus></label>
<button type="submit">Log in</button></form>
<p class="hint">The token from <code>qsched up</code> (<code>~/.config/qsched/token</code>) or from
<code>qsched admin user token NAME</code>. It stays on the server;
your browser keeps only a session cookie.</p>"""
    return _frame("Log in", "login", body)


def board(user: dict[str, Any]) -> str:
    body = '<h1>Devices</h1><div id="devices"><p class="hint">connecting…</p></div>'
    body += '<p id="others" class="hint"></p>'
    return _frame("Board", "board", body, user)


def job(user: dict[str, Any], job_id: str) -> str:
    body = f"""<h1 id="title">{escape(job_id)}</h1>
<section class="summary"><dl id="facts"></dl>
<div class="progress"><div id="bar"></div></div><span id="progress-text"></span>
<button id="cancel" data-job="{escape(job_id)}" hidden>Cancel</button></section>
<section><h2>Pinned config revisions</h2><dl id="revisions"><dd class="hint">none yet</dd></dl></section>
<section><h2>Fit summary</h2><dl id="fit"><dd class="hint">none yet</dd></dl></section>
<section id="plot-section"><h2>Data</h2>
<p id="plot-note" class="hint">the plot appears when the run has data (live, round by round)</p>
<img id="plot" alt="plot of the run's data" hidden></section>
<section id="log-section" hidden><h2>Log</h2><div id="log" class="log"></div></section>
<section id="record-section" hidden><h2>Benchmark record</h2><pre id="record"></pre></section>
<section><h2>Events</h2><ol id="events"></ol></section>"""
    return _frame(job_id, "job", body, user, f' data-job="{escape(job_id)}"')
