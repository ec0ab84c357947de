//! `PgStore` against a real PostgreSQL server that the test starts itself (Debian's
//! `postgresql` 15: `initdb` into a temporary directory, `pg_ctl start` on a free loopback port,
//! run as the `postgres` user when the test runs as root).
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::{
    Entry, JournalStore, PgStore, Record, RunStatus, TaskStatus, Timestamp, conformance,
};
use pipeline_core::load::load_pipeline;
use pipeline_core::task::TaskRegistry;
use pipeline_core::{Error, cli};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL server in a temporary directory, stopped on drop.
struct Server {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Server {
    /// Starts a server, or says why it cannot (only when not under CI).
    fn start(name: &str) -> Option<Self> {
        if !Path::new(BIN).join("initdb").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{BIN}/initdb is missing: install the Debian package postgresql"
            );
            eprintln!("skipped: {BIN}/initdb is missing (install postgresql)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("pc-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            // initdb refuses to run as root: the server runs as `postgres` in a directory it owns.
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            dir,
            port,
            as_postgres,
        };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            server.dir.display()
        );
        server.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                server.dir.join("server.log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Some(server)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let bin = Path::new(BIN).join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&bin)
                .args(args)
                .current_dir(&self.dir)
                .output()
        } else {
            Command::new(&bin)
                .args(args)
                .current_dir(&self.dir)
                .output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let bin = Path::new(BIN).join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&bin)
                .args(args)
                .output()
        } else {
            Command::new(&bin).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn entry(version: u64) -> Entry {
    Entry {
        version,
        at: Timestamp(1),
        record: Record::Paused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_store_keeps_the_contract_across_connections_and_runs_a_pipeline() {
    let Some(server) = Server::start("contract") else {
        return;
    };
    let store = PgStore::connect(&server.conninfo()).await.unwrap();
    conformance::check(&store, "pg").await.unwrap();
    // Debug output shows no connection string.
    assert!(!format!("{store:?}").contains("postgres"));

    // A second connection (another process or host) sees the same journals, and CAS holds
    // between the two.
    let other = PgStore::connect(&server.conninfo()).await.unwrap();
    assert_eq!(other.read("pg-r1").await.unwrap().len(), 3);
    other.append("pg-r1", 3, vec![entry(4)]).await.unwrap();
    let e = store.append("pg-r1", 3, vec![entry(4)]).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { actual: 4, .. }), "{e}");
    assert_eq!(store.version("pg-r1").await.unwrap(), 4);
    // Connecting again to an existing table keeps it.
    drop(other);
    let again = PgStore::connect(&server.conninfo()).await.unwrap();
    assert_eq!(again.read("pg-r1").await.unwrap()[3].record, Record::Paused);

    // The engine runs a pipeline on it, and resumes a failed run from the failed task.
    let dir = std::env::temp_dir().join(format!("pc-pg-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::builder(Arc::new(again), TaskRegistry::builtin()).build();
    let yaml = r"
kind: PIPELINE
name: pg
stageOrder: [S]
stages:
  S:
    taskOrder: [one, two]
    tasks:
      one:
        type: Shell
        input:
          script: echo x >> ../ones
      two:
        type: Shell
        input:
          script: test -e ../fixed
";
    let p = load_pipeline(yaml, &TaskRegistry::builtin()).unwrap();
    let (run, outcome) = engine
        .run(&p, BTreeMap::new(), "ci", &dir.join("work"))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    std::fs::write(dir.join("work/fixed"), "").unwrap();
    let outcome = engine.resume(&run).await.unwrap();
    assert_eq!(outcome, Outcome::Succeeded);
    let st = engine.status(&run).await.unwrap();
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.task("S", "two").status, TaskStatus::Succeeded);
    // `one` ran once: the resume did not rerun what succeeded.
    assert_eq!(
        std::fs::read_to_string(dir.join("work/ones")).unwrap(),
        "x\n"
    );

    // pipeline-run --journal CONNINFO: the run is journaled in PostgreSQL, not in the state
    // directory, and `status` finds it there.
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "kind: PIPELINE\nname: cli\nstageOrder: [S]\nstages:\n  S:\n    taskOrder: [t]\n    tasks:\n      t:\n        type: Shell\n        input:\n          script: echo hi\n",
    )
    .unwrap();
    let state = dir.join("cli-state");
    let conninfo = server.conninfo();
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        v.extend([
            "--journal".to_owned(),
            conninfo.clone(),
            "--state-dir".to_owned(),
            state.to_string_lossy().into_owned(),
        ]);
        v
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::main(args(&[file.to_str().unwrap()]), &mut out, &mut err).await;
    assert_eq!(
        code,
        cli::EXIT_OK,
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    assert!(!state.join("journal").exists());
    let runs = PgStore::connect(&conninfo)
        .await
        .unwrap()
        .runs()
        .await
        .unwrap();
    let cli_run = runs
        .iter()
        .find(|r| !r.starts_with("pg-") && **r != run)
        .expect("the CLI's run is in PostgreSQL")
        .clone();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::main(args(&["status", &cli_run, "--json"]), &mut out, &mut err).await;
    assert_eq!(code, cli::EXIT_OK, "{}", String::from_utf8_lossy(&err));
    assert!(String::from_utf8_lossy(&out).contains("SUCCEEDED"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_connection_is_a_typed_error_without_the_password() {
    let e = PgStore::connect("host=127.0.0.1 port=1 user=ci password=hunter2 connect_timeout=5")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Postgres { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
