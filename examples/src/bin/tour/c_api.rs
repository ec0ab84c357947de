//! The tour's chapter for `sdk-ffi`: the SDK from C. It builds the static library `libvsdk.a`
//! (`cargo build -p sdk-ffi`, in the tour's own profile), compiles `examples/c/vsdk_example.c`
//! against it with `cc` (the README's exact command) and runs it: connect to the embedded
//! simulator, list VMs, a First Class Disk, a volume move, an environment up and down, and a
//! pipeline with an approval, all through the C API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::{ChapterResult, Outcome};

/// The system libraries a Rust static library needs on Linux/glibc
/// (`rustc --print native-static-libs`), with the system libgit2 of pipeline-core's Git task.
const NATIVE_LIBS: &[&str] = &[
    "-lgit2",
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// Tells this chapter's story.
pub(crate) fn run() -> ChapterResult {
    if !runs("cc") {
        return Ok(Outcome::Skipped(
            "no C compiler: `cc` is not installed (apt-get install gcc); the chapter compiles \
             examples/c/vsdk_example.c with it"
                .to_owned(),
        ));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("examples/ has a parent")?
        .to_path_buf();
    let (profile_dir, release) = profile()?;
    let lib = profile_dir.join("libvsdk.a");

    let flag = if release { " --release" } else { "" };
    println!("   $ cargo build{flag} -p sdk-ffi");
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(&root).args(["build", "-p", "sdk-ffi"]);
    if release {
        build.arg("--release");
    }
    let out = build.output()?;
    ensure(&out, "cargo build -p sdk-ffi")?;
    if !lib.exists() {
        return Err(format!("{} is missing after the build", lib.display()).into());
    }
    println!(
        "   {} ({:.1} MB) ready in {:.1} s",
        relative(&lib, &root),
        size_mb(&lib),
        started.elapsed().as_secs_f64()
    );

    let scratch = std::env::temp_dir().join(format!("vsdk-tour-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let program = scratch.join("vsdk_example");
    let mut cc = Command::new("cc");
    cc.current_dir(&root)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            "ffi/include",
        ])
        .arg("examples/c/vsdk_example.c")
        .arg(relative(&lib, &root))
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&program);
    println!(
        "   $ cc -std=c11 -Wall -Wextra -Werror -I ffi/include examples/c/vsdk_example.c \\\n        {} {} -o vsdk_example",
        relative(&lib, &root),
        NATIVE_LIBS.join(" ")
    );
    let started = Instant::now();
    let out = cc.output()?;
    ensure(&out, "cc")?;
    println!(
        "   compiled and linked in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!("   $ ./vsdk_example {}", scratch.join("state").display());
    let started = Instant::now();
    let out = Command::new(&program).arg(scratch.join("state")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        println!("   | {line}");
    }
    ensure(&out, "vsdk_example")?;
    let _ = std::fs::remove_dir_all(&scratch);
    if !stdout.contains("vsdk_example: OK") {
        return Err("vsdk_example did not report OK".into());
    }
    println!(
        "   The C program ran the whole flow in {:.2} s: the same SDK, behind opaque handles, \
         numbered results and a thread-local last error (README, \"C API (sdk-ffi)\").",
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Done)
}

/// The tour's own target profile directory (`target/release` when run with `--release`), where
/// cargo puts `libvsdk.a` too, and whether it is the release profile.
fn profile() -> Result<(PathBuf, bool), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("the tour's executable has a directory")?
        .to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    Ok((dir, release))
}

fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// An error with the tool's stderr when it failed.
fn ensure(out: &Output, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into())
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn size_mb(path: &Path) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a size to print")]
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}
