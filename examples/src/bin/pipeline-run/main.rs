//! `pipeline-run`: runs Code Stream-style pipelines durably from the command line.
//!
//! ```text
//! pipeline-run FILE [--input k=v]... [--state-dir DIR] [--user NAME]
//! pipeline-run approve RUN REQUEST [--user NAME] [--group G]... [--reject] [--comment TEXT]
//!                                  [--state-dir DIR]
//! pipeline-run resume RUN [--state-dir DIR]
//! pipeline-run pause RUN [--reason TEXT] [--state-dir DIR]
//! pipeline-run cancel RUN [--hard] [--reason TEXT] [--state-dir DIR]
//! pipeline-run status RUN [--json] [--state-dir DIR]
//! ```
//!
//! State (the journal, working directories, the artifact repository, provenance statements)
//! lives in `--state-dir` (default `.pipeline-state`). A run that waits for an approval holds no
//! process: `pipeline-run` exits with status 3 and `approve` continues it. `pause` and `cancel`
//! from another terminal reach the process driving the run through the journal. A run that
//! failed, or whose process was killed, continues with `resume` from where its journal ends,
//! without rerunning the tasks that succeeded.
//!
//! Exit status: 0 succeeded, 1 failed or cancelled, 2 usage error, 3 waiting for approval,
//! 4 paused. The command line itself is `pipeline_core::cli`, tested there with a real git
//! repository, approvals, pause, cancel and a kill of the driving process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(pipeline_core::cli::main(
        std::env::args().skip(1),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ));
    ExitCode::from(code)
}
