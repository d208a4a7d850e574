//! Shared test helpers: a real local stack per test (moto's server for SQS
//! and EventBridge, redrelay's Data API emulator), each on a free loopback
//! port, with its own queue, ledger and results folder. Every process is a
//! child of the test and is killed by its PID when the stack is dropped.
#![allow(dead_code)]

pub mod http;
pub mod pg;

use redrelay::ledger::{Job, Ledger};
use serde_json::Value;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_redrelay")
}

/// The project's virtualenv (made by `make venv`).
pub fn venv() -> PathBuf {
    match std::env::var_os("REDRELAY_VENV") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
    }
}

pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or `make test`) first",
        path.display()
    );
    path
}

// ----- waiting on observable state ---------------------------------------------
//
// Tests never sleep a fixed time and hope: they poll something they can see
// (a ledger row through the CLI, a port, the emulator's record, a queue's
// counts) until it holds, and fail after a deadline saying what they waited
// for and what they saw last.

/// How long a worker may take to start consuming.
pub const WORKER_START: Duration = Duration::from_secs(30);

/// The start of the body of [`Stack::spawn_worker_ready`]'s probe message.
pub const PROBE: &str = "redrelay test probe: not an event";

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` until it gives `Ok`, for at most `timeout`. `Err` carries
/// what the probe saw; the last one is returned when time is up.
pub fn poll<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`poll`] for probes that await (the Ledger API).
pub async fn poll_async<T, F: Future<Output = Result<T, String>>>(
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until `probe` gives `Ok`; after `timeout`, fails naming `what` and
/// what the probe saw last.
pub fn wait_until<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, probe).unwrap_or_else(|seen| timed_out(timeout, what, &seen, None))
}

fn timed_out(timeout: Duration, what: &str, seen: &str, log: Option<&str>) -> ! {
    match log {
        Some(log) => panic!(
            "timed out after {timeout:?} waiting for {what}; last seen: {seen}\nworker log (tail):\n{}",
            tail(log, 60)
        ),
        None => panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}"),
    }
}

/// `Ok(value)` when `ok`, else `Err` describing what was seen.
pub fn seen<T: std::fmt::Debug>(ok: bool, value: T) -> Result<T, String> {
    if ok {
        Ok(value)
    } else {
        Err(format!("{value:?}"))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process killed (by its PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("{what} to accept connections on 127.0.0.1:{port}"),
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
}

/// Starts moto's server (SQS, EventBridge) on a free port, its stderr to
/// `log`; returns it once the port accepts connections, with its URL.
pub fn start_moto(log: Stdio) -> (Proc, String) {
    let port = free_port();
    let moto = Command::new(venv_bin("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start moto_server");
    let moto = Proc {
        child: moto,
        name: "moto".into(),
    };
    wait_for_port(port, "moto_server");
    (moto, format!("http://127.0.0.1:{port}"))
}

/// Reads the emulator's first stdout line, `listening on ADDR`, and returns
/// ADDR. That line is the emulator's documented interface for telling
/// which port it bound (`--listen 127.0.0.1:0`), not a log message: the
/// listener is bound before it is printed.
pub fn emulator_address(stdout: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the emulator's stdout: {e}"))?;
    line.trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
        .ok_or_else(|| format!("the emulator said {line:?}, not `listening on ADDR`"))
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub moto: Proc,
    pub emulator: Option<Proc>,
    pub moto_url: String,
    pub data_url: String,
    pub queue: String,
    pub config: PathBuf,
    pub emulator_args: Vec<String>,
    /// The emulator's --warehouse when not the stack's SQLite file (e.g. a
    /// `postgres://` URL); takes effect at the next start_emulator().
    pub warehouse: Option<String>,
    /// The ledger: the SQLite file's path, or a postgres:// URL.
    pub ledger: String,
}

pub struct StackOptions {
    pub page_size: usize,
    /// Extra lines for redrelay.toml.
    pub config_extra: String,
    /// Extra emulator flags.
    pub emulator_args: Vec<String>,
    /// A postgres:// ledger instead of the stack's SQLite file.
    pub ledger_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            page_size: 1000,
            config_extra: String::new(),
            emulator_args: Vec::new(),
            ledger_url: None,
        }
    }
}

impl Stack {
    pub fn start(test: &str) -> Stack {
        Self::start_with(test, StackOptions::default())
    }

    pub fn start_with(test: &str, opts: StackOptions) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let moto_log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let (moto, moto_url) = start_moto(moto_log.into());
        let queue = format!("rr-{test}-{}", std::process::id());
        let config = dir.path().join("redrelay.toml");
        let ledger = opts
            .ledger_url
            .clone()
            .unwrap_or_else(|| dir.path().join("ledger.db").display().to_string());
        // A worker without an api_token keeps the one it makes beside a
        // SQLite ledger; on PostgreSQL in the working directory, which for
        // the tests is the repository: keep it in the test's folder.
        let token_path = match &opts.ledger_url {
            Some(_) if !opts.config_extra.contains("api_token_path") => format!(
                "api_token_path = \"{}\"\n",
                dir.path().join("redrelay.api-token").display()
            ),
            _ => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "queue_name = \"{queue}\"\nrule_name = \"{queue}-rule\"\nledger = \"{}\"\n\
                 listen = \"127.0.0.1:0\"\n\
                 results_dir = \"{}\"\nworkgroup = \"wg-test\"\ndatabase = \"dev\"\n{}{}\n",
                ledger,
                dir.path().join("results").display(),
                token_path,
                opts.config_extra
            ),
        )
        .expect("write config");
        let mut emulator_args = vec![
            "--page-size".to_string(),
            opts.page_size.to_string(),
            "--record".to_string(),
            dir.path().join("record.jsonl").display().to_string(),
        ];
        emulator_args.extend(opts.emulator_args);
        let mut stack = Stack {
            dir,
            moto,
            emulator: None,
            moto_url,
            data_url: String::new(),
            queue,
            config,
            emulator_args,
            warehouse: None,
            ledger,
        };
        stack.start_emulator();
        let out = stack.run(&["setup"]);
        assert!(out.status.success(), "setup failed: {}", stderr(&out));
        stack
    }

    /// (Re)starts the emulator on a new port; the warehouse file is kept.
    pub fn start_emulator(&mut self) {
        if let Some(mut old) = self.emulator.take() {
            old.kill();
        }
        let mut cmd = Command::new(bin());
        let warehouse = match &self.warehouse {
            Some(w) => w.clone(),
            None => self.dir.path().join("warehouse.db").display().to_string(),
        };
        cmd.args(["emulator", "--listen", "127.0.0.1:0", "--warehouse"])
            .arg(warehouse)
            .args(&self.emulator_args)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("emulator.log"))
                    .expect("emulator log"),
            );
        self.aws_env(&mut cmd);
        let mut child = cmd.spawn().expect("start the emulator");
        let stdout = child.stdout.take().expect("emulator stdout");
        let addr = emulator_address(&mut BufReader::new(stdout))
            .unwrap_or_else(|e| panic!("{e}; emulator log:\n{}", self.log("emulator.log")));
        self.data_url = format!("http://{addr}");
        self.emulator = Some(Proc {
            child,
            name: "emulator".into(),
        });
    }

    /// Dummy credentials and the local endpoints, isolated from any real AWS
    /// configuration of the machine.
    pub fn aws_env(&self, cmd: &mut Command) {
        cmd.env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_SQS", &self.moto_url)
            .env("AWS_ENDPOINT_URL_EVENTBRIDGE", &self.moto_url)
            // The emulator's COPY/UNLOAD and SecretArn lookups reach moto.
            .env("AWS_ENDPOINT_URL_S3", &self.moto_url)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &self.moto_url);
        if !self.data_url.is_empty() {
            cmd.env("AWS_ENDPOINT_URL_REDSHIFT_DATA", &self.data_url);
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(bin(), args)
    }

    /// [`Stack::command`] with another redrelay binary (a benchmark of the
    /// production build, which has no emulator).
    pub fn command_of(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&self.config).args(args);
        self.aws_env(&mut cmd);
        cmd.env("REDRELAY_LOG", "info,aws=warn");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run redrelay")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "redrelay {args:?} failed ({}): {}",
            out.status,
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// `redrelay submit ...` returning the job id.
    pub fn submit(&self, args: &[&str]) -> i64 {
        let mut all = vec!["submit"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("submit printed {out:?}, not a job id"))
    }

    /// Starts `redrelay worker` in the background (stderr to worker.log).
    /// Returns at once: the worker has no readiness signal of its own, so a
    /// test waits for what the worker does (ledger rows, the queue, the
    /// emulator's record), never for a line of its log.
    pub fn spawn_worker(&self, extra: &[&str]) -> Proc {
        let mut args = vec!["worker"];
        args.extend_from_slice(extra);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("worker.log"))
            .expect("worker log");
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start worker");
        Proc {
            child,
            name: "worker".into(),
        }
    }

    /// Starts `redrelay worker` in the background with `env` set, its
    /// stdout written to the stack's file `stdout` (stderr to worker.log).
    pub fn spawn_worker_env(&self, env: &[(&str, &str)], stdout: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("worker.log"))
            .expect("worker log");
        let out = std::fs::File::create(self.dir.path().join(stdout)).expect("worker stdout");
        let mut cmd = self.command(&["worker"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(out).stderr(log).spawn().expect("start worker");
        Proc {
            child,
            name: "worker".into(),
        }
    }

    /// Starts a worker and waits until its consumer runs: a probe message
    /// sent to the queue is in the inbox (quarantined: it is not an event).
    /// The worker has no readiness signal of its own; this one is ledger
    /// state. Tests that need events to be applied by this worker use it:
    /// a job submitted before the worker started is found by the
    /// reconciler's first pass instead. The probe's body is [`PROBE`].
    pub fn spawn_worker_ready(&self, extra: &[&str]) -> Proc {
        let mut worker = self.spawn_worker(extra);
        let body = format!("{PROBE} {}", worker.pid());
        self.send_raw(&body);
        self.wait_for(
            WORKER_START,
            "the worker to consume a probe message",
            || {
                if let Some(status) = worker.child.try_wait().expect("wait worker") {
                    panic!(
                        "the worker exited ({status}): {}",
                        tail(&self.log("worker.log"), 60)
                    );
                }
                let inbox = self.inbox();
                let found = inbox.iter().any(|e| e["body"] == body.as_str());
                seen(found, inbox.len())
                    .map(drop)
                    .map_err(|n| format!("{n} inbox rows, none the probe"))
            },
        );
        worker
    }

    /// Runs `redrelay worker --until-idle`, which must exit 0 in time.
    pub fn worker_until_idle(&self, timeout: Duration) {
        let mut w = self.spawn_worker(&["--until-idle"]);
        let status = self.wait_for(timeout, "worker --until-idle to exit", || {
            w.child
                .try_wait()
                .expect("wait worker")
                .ok_or_else(|| "still running".to_string())
        });
        assert!(
            status.success(),
            "worker --until-idle exited {status}: {}",
            tail(&self.log("worker.log"), 60)
        );
    }

    /// [`wait_until`], with the tail of the worker's log in the failure.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        poll(timeout, probe)
            .unwrap_or_else(|seen| timed_out(timeout, what, &seen, Some(&self.log("worker.log"))))
    }

    /// [`Stack::wait_for`] for probes that await (the Ledger API).
    pub async fn wait_for_async<T, F: Future<Output = Result<T, String>>>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl FnMut() -> F,
    ) -> T {
        poll_async(timeout, probe)
            .await
            .unwrap_or_else(|seen| timed_out(timeout, what, &seen, Some(&self.log("worker.log"))))
    }

    /// Waits until `jobs show ID --json` satisfies `ok`; returns it.
    pub fn wait_job(
        &self,
        id: i64,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for(timeout, &format!("job {id}: {what}"), || {
            let job = self.json(&["jobs", "show", &id.to_string()]);
            if ok(&job) {
                Ok(job)
            } else {
                Err(format!(
                    "state {}, results {}, attempts {}",
                    job["state"], job["result_state"], job["attempts"]
                ))
            }
        })
    }

    /// Waits for a job to reach a state (polling the ledger through the CLI).
    pub fn wait_state(&self, id: i64, state: &str, timeout: Duration) -> Value {
        self.wait_job(id, &format!("state {state}"), timeout, |j| {
            j["state"] == state
        })
    }

    /// Waits until a job's results are fetched (`result_state` FETCHED).
    pub fn wait_fetched(&self, id: i64, timeout: Duration) -> Value {
        self.wait_job(id, "results FETCHED", timeout, |j| {
            j["result_state"] == "FETCHED"
        })
    }

    /// Waits until a run is no longer RUNNING; returns `runs show --json`.
    pub fn wait_run(&self, run: &str, timeout: Duration) -> Value {
        self.wait_for(timeout, &format!("run {run} to end"), || {
            let shown = self.json(&["runs", "show", run]);
            if shown["run"]["state"] != "RUNNING" {
                return Ok(shown);
            }
            let states: Vec<String> = shown["jobs"]
                .as_array()
                .map(|jobs| {
                    jobs.iter()
                        .map(|j| format!("{}={}", j["name"], j["state"]))
                        .collect()
                })
                .unwrap_or_default();
            Err(format!("RUNNING, jobs {}", states.join(" ")))
        })
    }

    /// The HTTP listener of the first live worker, from `workers list`.
    pub fn listener(&self) -> String {
        self.wait_for(Duration::from_secs(60), "the worker's listener", || {
            let ws = self.json(&["workers", "list"]);
            ws[0]["listen"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("no listener in {ws}"))
        })
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    pub fn warehouse_path(&self) -> PathBuf {
        self.dir.path().join("warehouse.db")
    }

    /// The live leader's worker id, from `workers list`.
    pub fn leader_id(&self) -> Option<String> {
        self.json(&["workers", "list"])
            .as_array()?
            .iter()
            .find(|w| w["leader"] == true)
            .and_then(|w| w["id"].as_str().map(str::to_string))
    }

    pub async fn ledger(&self) -> Ledger {
        let location = redrelay::ledger::location::parse(&self.ledger, None, |_| None)
            .expect("ledger location");
        Ledger::connect(&location, 2).await.expect("open ledger")
    }

    pub async fn jobs(&self) -> Vec<Job> {
        self.ledger().await.jobs(None, None).await.expect("jobs")
    }

    /// The emulator's record: every line (statements, events, faults).
    pub fn record_all(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("record line is JSON"))
            .collect()
    }

    /// The emulator's record of every statement it executed.
    pub fn record(&self) -> Vec<Value> {
        self.record_kind("statement")
    }

    /// The statements of the record whose `key` is `value` (`id`,
    /// `client_token`, ...).
    pub fn record_where(&self, key: &str, value: &str) -> Vec<Value> {
        self.record()
            .into_iter()
            .filter(|l| l[key] == value)
            .collect()
    }

    /// A boto3/SQS call through the venv's Python (a client we did not write).
    pub fn python(&self, script: &str) -> String {
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg("-c").arg(script);
        self.aws_env(&mut cmd);
        let out = cmd.output().expect("run python");
        assert!(out.status.success(), "python failed: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends a raw body to the stack's queue with boto3.
    pub fn send_raw(&self, body: &str) {
        let script = format!(
            "import boto3,os\n\
             sqs=boto3.client('sqs', endpoint_url=os.environ['AWS_ENDPOINT_URL_SQS'])\n\
             url=sqs.get_queue_url(QueueName={q:?})['QueueUrl']\n\
             sqs.send_message(QueueUrl=url, MessageBody={b})\n",
            q = self.queue,
            b = py_str(body)
        );
        self.python(&script);
    }

    /// (visible, in flight) messages of a queue of this stack, read with
    /// boto3 (a client we did not write).
    pub fn queue_counts(&self, queue: &str) -> (i64, i64) {
        let script = format!(
            "import boto3,os\n\
             sqs=boto3.client('sqs', endpoint_url=os.environ['AWS_ENDPOINT_URL_SQS'])\n\
             url=sqs.get_queue_url(QueueName={queue:?})['QueueUrl']\n\
             a=sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['All'])['Attributes']\n\
             print(a['ApproximateNumberOfMessages'], a['ApproximateNumberOfMessagesNotVisible'])\n"
        );
        let out = self.python(&script);
        let n: Vec<i64> = out
            .split_whitespace()
            .map(|x| x.parse().expect("a number"))
            .collect();
        assert_eq!(n.len(), 2, "queue attributes: {out:?}");
        (n[0], n[1])
    }

    /// Messages still on the queue (visible + in flight).
    pub fn queue_depth(&self) -> i64 {
        let (visible, in_flight) = self.queue_counts(&self.queue);
        visible + in_flight
    }

    /// Waits until the queue is empty: every message consumed and deleted.
    pub fn wait_queue_empty(&self, timeout: Duration) {
        self.wait_for(timeout, "the queue to be empty", || {
            let (visible, in_flight) = self.queue_counts(&self.queue);
            seen(visible + in_flight == 0, (visible, in_flight))
                .map(drop)
                .map_err(|s| format!("(visible, in flight) = {s}"))
        })
    }
}

/// A Python string literal holding `s` exactly.
pub fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Rows of a table in the emulator's warehouse, read with Python's sqlite3.
pub fn warehouse_query(path: &Path, sql: &str) -> Vec<Vec<Value>> {
    let script = format!(
        "import sqlite3,json\nc=sqlite3.connect({p})\nprint(json.dumps([list(r) for r in c.execute({s})]))\n",
        p = py_str(&path.display().to_string()),
        s = py_str(sql)
    );
    let out = Command::new(venv_bin("python"))
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json rows")
}

// ----- Helpers for tests/chaos.rs and tests/reliability.rs ------------------

impl Proc {
    /// Sends a signal (e.g. "TERM") to this process only, by its PID.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        poll(timeout, || {
            self.child
                .try_wait()
                .expect("wait child")
                .ok_or_else(String::new)
        })
        .ok()
    }
}

impl Stack {
    /// Writes a file into the stack's folder; returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }

    /// The emulator's record lines of one kind (`statement`, `replay`,
    /// `rejected`, `event`, `counters`).
    pub fn record_kind(&self, kind: &str) -> Vec<Value> {
        self.record_all()
            .into_iter()
            .filter(|l| l["kind"] == kind)
            .collect()
    }

    /// The whole inbox (`redrelay events --json`), newest first.
    pub fn inbox(&self) -> Vec<Value> {
        let v = self.json(&["events", "--limit", "1000000"]);
        v.as_array().cloned().unwrap_or_default()
    }

    /// Messages in the dead-letter queue (visible + in flight).
    pub fn dlq_depth(&self) -> i64 {
        let (visible, in_flight) = self.queue_counts(&format!("{}-dlq", self.queue));
        visible + in_flight
    }

    /// A Data API client of the library, pointed at the emulator with test
    /// credentials (what the worker builds from the environment).
    pub async fn data_api(&self) -> redrelay::dataapi::DataApi {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.data_url)
            .credentials_provider(aws_sdk_redshiftdata::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        redrelay::dataapi::DataApi::new(&sdk)
    }

    /// Waits until at least `n` jobs of `run` are SUBMITTED (in flight).
    pub async fn wait_submitted(&self, run: &str, n: usize, timeout: Duration) {
        let ledger = self.ledger().await;
        let what = format!("{n} jobs of run {run} to be SUBMITTED");
        self.wait_for_async(timeout, &what, || async {
            let jobs = ledger
                .jobs(Some(redrelay::state::JobState::Submitted), Some(run))
                .await
                .expect("jobs");
            seen(jobs.len() >= n, jobs.len())
                .map(drop)
                .map_err(|s| format!("{s} submitted"))
        })
        .await
    }

    /// Waits until no pipeline run is RUNNING; returns `runs list --json`.
    pub fn wait_runs_ended(&self, timeout: Duration) -> Vec<Value> {
        self.wait_for(timeout, "every run to end", || {
            let runs = self.json(&["runs", "list"]);
            let runs = runs.as_array().cloned().unwrap_or_default();
            let open: Vec<&Value> = runs.iter().filter(|r| r["state"] == "RUNNING").collect();
            if open.is_empty() {
                Ok(runs)
            } else {
                Err(format!("{} runs RUNNING: {open:?}", open.len()))
            }
        })
    }
}

/// A tiny seeded PRNG (splitmix64) for tests that must be reproducible
/// without depending on a crate's algorithm choices.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (hi exclusive, hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

/// The `p` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A kB field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Stack {
    /// A queue on moto's SQS and a rule on its EventBridge sending redrelay's
    /// own events of `source` into it: the queue's URL.
    pub fn own_events_queue(&self, prefix: &str, rule: &str, source: &str) -> String {
        let queue = format!("{prefix}-{}", std::process::id());
        let setup = format!(
            "import boto3,os,json\n\
             sqs=boto3.client('sqs', endpoint_url=os.environ['AWS_ENDPOINT_URL_SQS'])\n\
             ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
             url=sqs.create_queue(QueueName={queue:?})['QueueUrl']\n\
             arn=sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
             ev.put_rule(Name={rule:?}, EventPattern=json.dumps({{'source': [{source:?}]}}))\n\
             ev.put_targets(Rule={rule:?}, Targets=[{{'Id': 'q', 'Arn': arn}}])\n\
             print(url)\n"
        );
        self.python(&setup).trim().to_string()
    }

    /// Messages from `url` until `n` distinct ones (by `detail.event_id`,
    /// or the body when there is none) have come or `within` has passed,
    /// then until a receive finds none (so that copies are seen too); each
    /// deleted once read (in batches).
    pub fn receive_own_events(&self, url: &str, n: usize, within: Duration) -> Vec<Value> {
        let secs = within.as_secs();
        let receive = format!(
            "import boto3,os,json,time\n\
             sqs=boto3.client('sqs', endpoint_url=os.environ['AWS_ENDPOINT_URL_SQS'])\n\
             got=[]\n\
             ids=set()\n\
             end=time.time()+{secs}\n\
             while time.time() < end:\n\
             \x20   ms=sqs.receive_message(QueueUrl={url:?}, MaxNumberOfMessages=10, WaitTimeSeconds=1).get('Messages', [])\n\
             \x20   if not ms and len(ids) >= {n}:\n\
             \x20       break\n\
             \x20   for m in ms:\n\
             \x20       e=json.loads(m['Body'])\n\
             \x20       got.append(e)\n\
             \x20       ids.add(json.dumps(e.get('detail', {{}}).get('event_id', m['Body'])))\n\
             \x20   if ms:\n\
             \x20       sqs.delete_message_batch(QueueUrl={url:?}, Entries=[{{'Id': str(i), 'ReceiptHandle': m['ReceiptHandle']}} for i, m in enumerate(ms)])\n\
             print(json.dumps(got))\n"
        );
        serde_json::from_str(self.python(&receive).trim()).unwrap()
    }
}
