//! The web console (issue 12) in a real browser: Debian's headless
//! Chromium driven through chromedriver by Selenium
//! (`tests/browser/console_check.py`), against a worker on the local stack,
//! with an api_token or with the token it made itself (opened from the
//! address `redrelay console-url` prints). A missing browser or driver
//! fails the test: `make browser` installs them.

mod common;

use common::http::call;
use common::{Stack, StackOptions};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "console-test-token-7d1e";

/// A run of four jobs: `load` FINISHED, `flaky_a` and `flaky_b` FAILED
/// (their first attempt fails), `report` SKIPPED.
const PIPELINE: &str = r#"
name = "console_demo"
[jobs.load]
sql = "CREATE TABLE loaded AS SELECT 1 AS v"
[jobs.flaky_a]
sql = "CREATE TABLE a AS SELECT v FROM loaded"
depends_on = ["load"]
[jobs.flaky_b]
sql = "CREATE TABLE b AS SELECT v FROM loaded"
depends_on = ["load"]
[jobs.report]
sql = "SELECT (SELECT COUNT(*) FROM a) + (SELECT COUNT(*) FROM b) AS n"
depends_on = ["flaky_a", "flaky_b"]
"#;

struct Console {
    stack: Stack,
    _worker: common::Proc,
    addr: String,
    run: String,
    token: String,
}

impl Console {
    /// A worker with `api_token = TOKEN`.
    fn start(test: &str) -> Console {
        Self::start_with(test, format!("api_token = \"{TOKEN}\"\n"))
    }

    /// A worker with `config_extra`; without a token in it, the worker's
    /// own token, from the address `redrelay console-url` prints.
    fn start_with(test: &str, config_extra: String) -> Console {
        let stack = Stack::start_with(
            test,
            StackOptions {
                config_extra,
                emulator_args: vec!["--fail-first".into(), "1:flaky_".into()],
                ..StackOptions::default()
            },
        );
        let worker = stack.spawn_worker_ready(&[]);
        let addr = stack.listener();
        let url = stack.ok(&["console-url"]).trim().to_string();
        let token = url
            .strip_prefix(&format!("http://{addr}/#token="))
            .unwrap_or_else(|| panic!("console-url printed {url:?} for {addr}"))
            .to_string();
        let file = stack.write_file("console.toml", PIPELINE);
        let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
        let shown = stack.wait_run(&run, WAIT);
        assert_eq!(shown["run"]["state"], "FAILED", "{shown:#}");
        Console {
            stack,
            _worker: worker,
            addr,
            run,
            token,
        }
    }

    fn job(&self, name: &str) -> Value {
        let shown = self.stack.json(&["runs", "show", &self.run]);
        shown["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no job {name}: {shown:#}"))
    }

    /// The browser check `check` as a child process (stdout piped).
    fn check(&self, check: &str, job: Option<i64>) -> Command {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut cmd = Command::new(common::venv_bin("python"));
        cmd.arg(format!("{root}/tests/browser/console_check.py"))
            .env("REDRELAY_CONSOLE_URL", format!("http://{}", self.addr))
            .env("REDRELAY_API_TOKEN", &self.token)
            .env("REDRELAY_RUN", &self.run)
            .env("REDRELAY_CHECK", check)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(id) = job {
            cmd.env("REDRELAY_JOB", id.to_string());
        }
        cmd
    }

    fn run_check(&self, check: &str, job: Option<i64>) -> String {
        let out = self
            .check(check, job)
            .output()
            .expect("run console_check.py");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "browser check {check} failed:\n{stdout}\n{}\nworker log:\n{}",
            common::stderr(&out),
            common::tail(&self.stack.log("worker.log"), 30)
        );
        stdout
    }
}

/// With the default configuration: the worker's own token, opened from
/// the address it printed.
#[test]
fn the_run_page_shows_every_job_and_retry_works_from_the_browser() {
    let c = Console::start_with("console", String::new());
    assert_eq!(c.token.len(), 64, "the worker's own token: {}", c.token);
    // The page's HTML comes from the worker itself, with nothing external.
    let page = call(&c.addr, "GET", &format!("/runs/{}", c.run), None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "{}",
        page.body
    );

    let out = c.run_check("run-page", None);
    let summary: Value = serde_json::from_str(
        out.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("a JSON summary line"),
    )
    .expect("summary JSON");
    assert_eq!(summary["jobs"], 4, "{out}");

    // Retry flaky_a with its button: the ledger shows a second attempt.
    let a = c.job("flaky_a");
    assert_eq!(a["state"], "FAILED");
    let id = a["id"].as_i64().unwrap();
    c.run_check("retry", Some(id));
    let shown = c.stack.wait_state(id, "FINISHED", WAIT);
    assert_eq!(shown["attempt"], 2, "{shown:#}");
    let attempts = c.stack.json(&["jobs", "show", &id.to_string()])["attempts"].clone();
    assert_eq!(attempts.as_array().unwrap().len(), 2, "{attempts:#}");
}

#[test]
fn the_graph_changes_live_when_a_job_finishes() {
    let c = Console::start("console-live");
    let b = c.job("flaky_b");
    assert_eq!(b["state"], "FAILED");
    let id = b["id"].as_i64().unwrap();
    let mut child = c
        .check("live", Some(id))
        .spawn()
        .expect("start the live check");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + WAIT;
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stdout
            .read_line(&mut line)
            .expect("read the check's output");
        seen.push_str(&line);
        if line.trim() == "READY" {
            break;
        }
        assert!(
            n > 0 && Instant::now() < deadline,
            "no READY from the check:\n{seen}"
        );
    }
    // The page is open and live: the job is retried behind its back.
    c.stack.ok(&["jobs", "retry", &id.to_string()]);
    c.stack.wait_state(id, "FINISHED", WAIT);
    let status = child.wait().expect("wait for the live check");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).ok();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).ok();
    }
    assert!(status.success(), "live check failed:\n{seen}{rest}\n{err}");
}

/// Writes the run page's screenshot for docs/ (`REDRELAY_SCREENSHOT=path
/// cargo test --test console screenshot -- --ignored`).
#[test]
#[ignore = "writes docs/console-run.png on demand"]
fn screenshot() {
    let c = Console::start("console-shot");
    let path = std::env::var("REDRELAY_SCREENSHOT")
        .unwrap_or_else(|_| format!("{}/docs/console-run.png", env!("CARGO_MANIFEST_DIR")));
    let out = c
        .check("screenshot", None)
        .env("REDRELAY_SCREENSHOT", &path)
        .output()
        .expect("run the screenshot check");
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(std::fs::metadata(&path)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
}

/// Issue 18: a run a trigger started says so on its page (the trigger, the
/// event's body), and the triggers page lists each trigger's events by
/// state, as the API does.
#[test]
fn a_triggered_run_shows_its_event_and_the_triggers_page_lists_triggers() {
    let c = Console::start("console-triggers");
    let file = c.stack.write_file(
        "orders.toml",
        "name = \"orders\"\n[params]\nbatch = \"\"\n\
         [trigger.pattern]\nsource = [\"app.orders\"]\n\
         [trigger.params]\nbatch = \"$.detail.batch\"\n\
         [jobs.take]\nsql = \"SELECT :batch AS batch\"\nparams = { batch = { param = \"batch\" } }\n",
    );
    c.stack.ok(&["triggers", "add", &file]);
    c.stack.ok(&["setup"]);
    c.stack.python(
        "import boto3,os,json\n\
         ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
         ev.put_events(Entries=[{'Source': 'app.orders', 'DetailType': 'Batch Ready', 'Detail': json.dumps({'batch': 'b1'})}])\n",
    );
    let run = c.stack.wait_for(WAIT, "the trigger to start a run", || {
        let shown = c.stack.json(&["triggers", "show", "orders"]);
        let run = shown["latest_events"][0]["run_id"]
            .as_str()
            .map(str::to_string);
        common::seen(run.is_some(), run).map(|r| r.unwrap_or_default())
    });
    let out = c
        .check("triggers", None)
        .env("REDRELAY_RUN", &run)
        .output()
        .expect("run the triggers check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", common::stderr(&out));
    assert!(stdout.contains("trigger orders"), "{stdout}");
}
