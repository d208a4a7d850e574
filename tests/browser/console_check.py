#!/usr/bin/env python3
"""One check of the web console in headless Chromium (Debian's; selenium
downloads nothing), run by the Rust tests with REDRELAY_CONSOLE_URL (the
listener), REDRELAY_API_TOKEN (""/unset: none), REDRELAY_RUN (/runs/RUN is
opened), REDRELAY_CHECK, and REDRELAY_JOB or REDRELAY_SCREENSHOT:

  run-page    every job has a graph node and a table row showing its API
              state; prints {"jobs": n, "states": {STATE: n}}
  retry       JOB is FAILED: clicks its retry button; the API and the page
              (not reloaded) then show it revived
  live        once the page's stream is connected, prints READY alone on a
              line, then waits for JOB's node to show FINISHED (no reload)
  screenshot  as run-page, then writes the PNG REDRELAY_SCREENSHOT

Exit 0: passed; 1: failed (what differed on stderr); 2: could not run.
"""
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("REDRELAY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REDRELAY_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 60.0  # seconds, the most any one wait takes
STATES = "PENDING READY SUBMITTED RETRY_WAIT FINISHED FAILED ABORTED CANCELLED SKIPPED".split()

# What the page shows: each job's {"node"|"row": {state, text, label}} (text:
# what is visible), the run's state, the stream hooks, the watch below.
PAGE_JS = """
const jobs = {}, shown = t => getComputedStyle(t).display !== "none"
  && getComputedStyle(t).visibility !== "hidden";
for (const [kind, sel] of [["node", "g.node[data-job-id]"], ["row", "tr[data-job-id]"]]) {
  for (const el of document.querySelectorAll(sel)) {
    const text = el instanceof HTMLElement ? el.innerText : Array.from(
      el.querySelectorAll("text, tspan")).filter(shown).map(t => t.textContent).join(" ");
    (jobs[el.dataset.jobId] ||= {})[kind] = {state: el.getAttribute("data-state"), text,
      label: el.getAttribute("aria-label")};
  }
}
const run = document.querySelector("#run-state[data-state]");
return {jobs, run: run && run.getAttribute("data-state"), live: window.redrelayLive === true,
        events: window.redrelayEventsSeen ?? null, noReload: window.__noReload ?? null,
        origin: performance.timeOrigin, seq: window.__stateSeq ?? null};
"""

# Marks the page (a reload drops it); records each state job arguments[0]'s node shows.
WATCH_JS = """
const id = CSS.escape(String(arguments[0])), seq = window.__stateSeq = [];
window.__noReload = 1;
const note = () => {
  const s = document.querySelector(`g.node[data-job-id="${id}"]`)?.getAttribute("data-state");
  if (s && seq[seq.length - 1] !== s) seq.push(s);
};
note();
new MutationObserver(note).observe(document.documentElement,
  {subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"]});
"""


def fail(message, code=1):
    print(f"console_check: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def env(name):
    return os.environ.get(name) or fail(f"{name} is not set (see this file's docstring)", 2)


BASE, RUN, CHECK = env("REDRELAY_CONSOLE_URL").rstrip("/"), env("REDRELAY_RUN"), env("REDRELAY_CHECK")
TOKEN = os.environ.get("REDRELAY_API_TOKEN", "")


def api(path):
    req = urllib.request.Request(BASE + path, headers={"Accept": "application/json"})
    if TOKEN:
        req.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)
    except urllib.error.HTTPError as e:
        fail(f"GET {path}: {e.code} {e.read().decode(errors='replace')}")
    except OSError as e:
        fail(f"GET {path}: {e}")


def shows(text, state):  # whether text holds a state word (any case, "_" or a space)
    norm = lambda t: " ".join((t or "").upper().replace("_", " ").split())  # noqa: E731
    return norm(state) in norm(text)


def until(what, probe, timeout=WAIT):
    """probe() every 0.25 s until (True, value); else fails with its last word."""
    deadline = time.monotonic() + timeout
    while True:
        ok, value = probe()
        if ok:
            return value
        if time.monotonic() > deadline:
            fail(f"gave up after {timeout:.0f} s waiting for {what}: {value}")
        time.sleep(0.25)


def agreement(driver):
    """run-page's condition: every job's node and row show the API's state."""
    detail = api(f"/api/v1/runs/{urllib.parse.quote(RUN, safe='')}")
    want = {str(j["id"]): (j["name"], j["state"]) for j in detail["jobs"]}
    page = driver.execute_script(PAGE_JS)
    diffs = []
    for jid, (name, state) in sorted(want.items()):
        for kind in ("node", "row"):
            got = page["jobs"].get(jid, {}).get(kind)
            if got is None:
                diffs.append(f"job {jid} ({name}) has no {kind}")
            elif got["state"] != state or not shows(got["text"], state):
                diffs.append(f"job {jid} {kind}: data-state={got['state']!r} text={got['text']!r}, API: {state}")
            elif kind == "node" and got["label"] != f"job {name}: {state}":
                diffs.append(f"job {jid} node: aria-label={got['label']!r}, want 'job {name}: {state}'")
    if page["run"] != detail["run"]["state"]:
        diffs.append(f"#run-state data-state={page['run']!r}, API: {detail['run']['state']}")
    if diffs:
        return False, "; ".join(diffs)
    return True, {"jobs": len(want), "states": dict(Counter(s for _, s in want.values()))}


def check_retry(driver, jid):
    before = api(f"/api/v1/jobs/{jid}")
    if before["state"] != "FAILED":
        fail(f"job {jid} is {before['state']}, not FAILED: nothing to retry")
    until("the live stream", lambda: (driver.execute_script("return window.redrelayLive === true"), "not live"))
    driver.execute_script(WATCH_JS, jid)
    sel = f'button[data-action="retry"][data-job-id="{jid}"]'

    def click():  # the page may redraw the button between finding and clicking it
        for b in driver.find_elements("css selector", sel):
            try:
                if b.is_displayed() and b.is_enabled():
                    b.click()
                    return True, None
            except WebDriverException:  # stale, or covered for a moment
                pass
        return False, f"no visible, enabled {sel} that takes a click"

    until(f"job {jid}'s retry button", click)
    seen = {"api": [], "page": False}

    def revived():
        now = api(f"/api/v1/jobs/{jid}")
        if not seen["api"] or seen["api"][-1] != [now["state"], now["attempt"]]:
            seen["api"].append([now["state"], now["attempt"]])
        page = driver.execute_script(PAGE_JS)
        if page["noReload"] != 1:
            fail(f"the page reloaded after the retry click (API went {seen['api']})")
        view = page["jobs"].get(jid, {})
        shown = [view.get(k, {}).get("state") for k in ("node", "row")]
        texts = " ".join(view.get(k, {}).get("text") or "" for k in ("node", "row"))
        if all(s in STATES and s != "FAILED" for s in shown) and not shows(texts, "FAILED"):
            seen["page"] = True
        api_ok = any(s != "FAILED" for s, _ in seen["api"]) and now["attempt"] > before["attempt"]
        return api_ok and seen["page"], f"API went {seen['api']}, page shows {shown} ({texts!r})"

    until(f"job {jid} to leave FAILED", revived)
    page = driver.execute_script(PAGE_JS)
    print(json.dumps({"job": int(jid), "api": seen["api"], "page": page["seq"]}), flush=True)


def check_live(driver, jid):
    def connected():
        page = driver.execute_script(PAGE_JS)
        return page["live"] and jid in page["jobs"], f"live={page['live']}, jobs shown {sorted(page['jobs'])}"

    until(f"the live stream and job {jid} on the page", connected)
    driver.execute_script(WATCH_JS, jid)
    start = driver.execute_script(PAGE_JS)
    print("READY", flush=True)

    def finished():
        page = driver.execute_script(PAGE_JS)
        if page["noReload"] != 1 or page["origin"] != start["origin"]:
            fail(f"the page reloaded (states seen before: {start['seq']})")
        view = page["jobs"].get(jid, {})
        return (view.get("node", {}).get("state") == "FINISHED",
                f"states seen {page['seq']}, row {view.get('row', {}).get('state')}, events {page['events']}")

    until(f"job {jid}'s node to show FINISHED", finished)
    page = driver.execute_script(PAGE_JS)
    if not isinstance(page["events"], int) or page["events"] <= (start["events"] or 0):
        fail(f"window.redrelayEventsSeen went {start['events']} -> {page['events']}: "
             "the change did not come through the event stream")
    print(json.dumps({"job": int(jid), "states": page["seq"], "events": page["events"], "reloaded": False}))


def check_triggers(driver):
    """RUN was started by an event: its page says by which trigger, with the
    event's body; the triggers page lists the trigger as the API does."""
    def started_by():
        els = driver.find_elements("id", "started-by")
        return (True, els[0].text) if els else (False, "no #started-by on the run page")
    text = until("the run page to show the event that started it", started_by)
    event = api(f"/api/v1/runs/{urllib.parse.quote(RUN, safe='')}")["trigger_event"]
    if f"trigger {event['trigger']}" not in text:
        fail(f"the run page says {text!r}, the API {event!r}")
    driver.get(f"{BASE}/triggers")
    listed = api("/api/v1/triggers")

    def rows():
        found = {}
        for tr in driver.find_elements("css selector", "table#triggers tr[data-trigger]"):
            found[tr.get_attribute("data-trigger")] = tr.text
        return (len(found) == len(listed), found)
    shown = until("the triggers page to list every trigger", rows)
    for t in listed:
        row = shown.get(t["name"], "")
        for state, n in t["events"].items():
            if f"{state} {n}" not in row:
                fail(f"trigger {t['name']}: the page shows {row!r}, the API {t['events']!r}")
    print(json.dumps({"started_by": text, "triggers": shown}), flush=True)


def main():
    sys.stdout.reconfigure(line_buffering=True)
    if CHECK not in ("run-page", "retry", "live", "screenshot", "triggers"):
        fail(f"REDRELAY_CHECK={CHECK!r}: one of run-page, retry, live, screenshot, triggers", 2)
    jid = env("REDRELAY_JOB") if CHECK in ("retry", "live") else None
    shot = env("REDRELAY_SCREENSHOT") if CHECK == "screenshot" else None
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            fail(f"{path} is missing: `make browser` installs chromium and chromium-driver", 2)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage"):  # /dev/shm is small in containers
        options.add_argument(arg)
    options.unhandled_prompt_behavior = "accept"  # a confirm() before retrying
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:  # a Service with a path: Selenium Manager is never asked for a driver
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    except WebDriverException as e:
        fail(f"cannot start {CHROMIUM} through {CHROMEDRIVER}: {e.msg}", 2)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        url = f"{BASE}/runs/{urllib.parse.quote(RUN, safe='')}"
        driver.get(url + (f"#token={urllib.parse.quote(TOKEN, safe='')}" if TOKEN else ""))
        if CHECK in ("run-page", "screenshot"):
            summary = until(f"the page to show run {RUN}'s jobs as the API does", lambda: agreement(driver))
            if shot:
                if not driver.save_screenshot(shot):
                    fail(f"cannot write {shot}")
                summary["screenshot"] = shot
            print(json.dumps(summary), flush=True)
        elif CHECK == "triggers":
            check_triggers(driver)
        elif CHECK == "retry":
            check_retry(driver, jid)
        else:
            check_live(driver, jid)
    except BaseException:  # the page's own errors say most about a failure
        with contextlib.suppress(WebDriverException):
            for entry in driver.get_log("browser"):
                print(f"browser: {entry['level']} {entry['message']}", file=sys.stderr)
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
