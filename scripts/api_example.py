#!/usr/bin/env python3
"""Submit SQL to a redrelay worker through its JSON API, wait for the job,
and print its result: what a program in another language does, here with
Python's standard library only (urllib, json).

  1. GET  /api/v1/events             server-sent events of state changes,
                                     opened first so that no change is missed
  2. POST /api/v1/jobs               {"sql": ..., "name": "api-example"}
  3. until the job has ended and its result is fetched: follow the events
     (or, when the stream is not available, GET /api/v1/jobs/ID every 0.5 s)
  4. GET  /api/v1/jobs/ID/results?format=csv   the result file, printed

Progress goes to stderr, the result to stdout. Exit 0 when the job
FINISHED; 1 when it did not, when the API refused a call (its message is
printed) or when --timeout passed.
"""
import argparse
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request

ENDED = {"FINISHED", "FAILED", "ABORTED", "CANCELLED", "SKIPPED"}


class ApiError(Exception):
    pass


class Client:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method, path, body=None, accept="application/json", timeout=30):
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                message = json.loads(text)["message"]
            except (ValueError, KeyError, TypeError):
                message = text.strip() or e.reason
            raise ApiError(f"{method} {path}: {e.code} {message}") from None
        except OSError as e:  # refused, unreachable, timed out
            raise ApiError(f"{method} {path}: cannot reach {self.url} ({e})") from None

    def json(self, method, path, body=None):
        with self.request(method, path, body) as res:
            return json.load(res)


def follow_events(client, out):
    """Reads GET /api/v1/events line by line and puts each job change on
    `out` as ("job", data); ("open", None) once connected, ("gone", why)
    when the stream fails or ends. Runs in its own thread."""
    try:
        # Keep-alive comments come every 15 s: a longer silence means trouble.
        res = client.request("GET", "/api/v1/events", accept="text/event-stream", timeout=40)
    except ApiError as e:
        out.put(("gone", str(e)))
        return
    out.put(("open", None))
    event, data = "message", []
    try:
        with res:
            for raw in res:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith(":"):  # a comment: keep-alive
                    continue
                if line == "":  # the end of one event
                    if event == "job" and data:
                        out.put(("job", json.loads("\n".join(data))))
                    elif event == "error" and data:
                        print(f"api_example: the stream says: {''.join(data)}", file=sys.stderr)
                    event, data = "message", []
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
        out.put(("gone", "the server ended the stream"))
    except (OSError, ValueError) as e:
        out.put(("gone", f"the stream broke ({e})"))


def done(state, result_state):
    """Whether a job in `state` with `result_state` has nothing more to do."""
    return state in ENDED and (state != "FINISHED" or result_state != "PENDING")


def wait_for(client, job_id, events, deadline):
    """The job's final (state, result_state): from the event stream while
    it works, else by polling."""
    streaming = events is not None
    last = None
    while time.monotonic() < deadline:
        if streaming:
            try:
                kind, data = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if kind == "gone":
                print(f"api_example: {data}; polling instead", file=sys.stderr)
                streaming = False
                continue
            if kind != "job" or (data.get("job_id") or data.get("id")) != job_id:
                continue
            now = (data["state"], data.get("result_state"))
        else:
            job = client.json("GET", f"/api/v1/jobs/{job_id}")
            now = (job["state"], job.get("result_state"))
        if now != last:
            print(f"api_example: job {job_id}: {now[0]}, result {now[1]}", file=sys.stderr)
            last = now
        if done(*now):
            return now
        if not streaming:
            time.sleep(0.5)
    raise ApiError(f"job {job_id} is still {last[0] if last else 'waiting'} after the timeout")


def main():
    parser = argparse.ArgumentParser(
        description="Submit SQL to a redrelay worker through its JSON API, follow the job "
        "through the event stream and print its result as CSV (or JSON Lines).",
        epilog="The token, when the worker has api_token set, comes from the environment "
        "variable REDRELAY_API_TOKEN. Example: REDRELAY_API_TOKEN=... "
        "scripts/api_example.py --sql 'SELECT 1 AS answer'",
    )
    parser.add_argument("--url", default="http://127.0.0.1:9464",
                        help="the worker's listener (default: %(default)s)")
    parser.add_argument("--sql", default="SELECT 1 AS answer",
                        help="the statement to run (default: %(default)r)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                        help="the result format kept and printed (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up after this long in all (default: %(default)s)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    client = Client(args.url, os.environ.get("REDRELAY_API_TOKEN", ""))
    try:
        # The stream first: it sends the changes made after it opened.
        events = queue.Queue()
        threading.Thread(target=follow_events, args=(client, events), daemon=True).start()
        try:
            kind, why = events.get(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
        except queue.Empty:
            kind, why = "gone", "it did not open within 10 s"
        if kind != "open":
            print(f"api_example: no event stream ({why}); polling instead", file=sys.stderr)
            events = None
        job = client.json("POST", "/api/v1/jobs",
                          {"sql": args.sql, "name": "api-example", "result_formats": args.format})
        job_id = job["id"]
        print(f"api_example: job {job_id} recorded, {job['state']}", file=sys.stderr)
        state, result_state = wait_for(client, job_id, events, deadline)
        if state != "FINISHED":
            error = client.json("GET", f"/api/v1/jobs/{job_id}").get("error")
            raise ApiError(f"job {job_id} ended {state}: {error or 'no error recorded'}")
        if result_state == "NONE":
            print(f"api_example: job {job_id} FINISHED; its statement returns no rows", file=sys.stderr)
            return 0
        if result_state != "FETCHED":
            error = client.json("GET", f"/api/v1/jobs/{job_id}").get("result_error")
            raise ApiError(f"job {job_id} FINISHED but its result is {result_state}: {error}")
        accept = "text/csv" if args.format == "csv" else "application/x-ndjson"
        with client.request("GET", f"/api/v1/jobs/{job_id}/results?format={args.format}", accept=accept) as res:
            for chunk in iter(lambda: res.read(65536), b""):
                sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return 0
    except ApiError as e:
        print(f"api_example: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
