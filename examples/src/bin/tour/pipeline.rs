//! The tour's chapter for `pipeline-core`: the sample pipeline of `pipeline-run` on a real
//! local git repository, parked on an approval, approved, published and promoted by digest.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use pipeline_core::approval::Actor;
use pipeline_core::artifact::{self, ArtifactStore, LocalStore};
use pipeline_core::engine::{Engine, Outcome};
use pipeline_core::journal::FileStore;
use pipeline_core::load::load_pipeline;
use pipeline_core::task::TaskRegistry;

use crate::{ChapterResult, Outcome as Chapter};

const PIPELINE: &str = include_str!("../pipeline-run/ship.yaml");
const APP: &[(&str, &str)] = &[
    ("app.sh", include_str!("../pipeline-run/sample-app/app.sh")),
    (
        "build.sh",
        include_str!("../pipeline-run/sample-app/build.sh"),
    ),
    (
        "test.sh",
        include_str!("../pipeline-run/sample-app/test.sh"),
    ),
];

fn git(dir: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "tour")
        .env("GIT_AUTHOR_EMAIL", "tour@example.invalid")
        .env("GIT_COMMITTER_NAME", "tour")
        .env("GIT_COMMITTER_EMAIL", "tour@example.invalid")
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// Tells this chapter's story.
pub(crate) fn run() -> ChapterResult {
    println!("   pipeline-core: {}", pipeline_core::CAPABILITY);
    if Command::new("git").arg("--version").output().is_err() {
        return Ok(Chapter::Skipped("git is not installed".into()));
    }
    let root = std::env::temp_dir().join(format!("sdk-tour-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo)?;
    for (name, text) in APP {
        let path = repo.join(name);
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    git(&repo, &["init", "--quiet", "-b", "main"])?;
    git(&repo, &["add", "."])?;
    git(&repo, &["commit", "--quiet", "-m", "sample app"])?;
    println!("   a git repository with a small app: {}", repo.display());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let journal = Arc::new(FileStore::open(root.join("journal"))?);
        let artifacts: Arc<dyn ArtifactStore> = Arc::new(LocalStore::open(root.join("artifacts"))?);
        let mut registry = TaskRegistry::builtin();
        artifact::register_kinds(&mut registry, &artifacts);
        let engine = Engine::builder(journal, registry)
            .artifacts(Arc::clone(&artifacts))
            .build();
        let pipeline = load_pipeline(PIPELINE, engine.registry())?;
        println!(
            "   pipeline `{}`: {} stages, {} tasks, validated before running",
            pipeline.name,
            pipeline.stages.len(),
            pipeline.task_count()
        );
        let inputs = BTreeMap::from([
            ("repo".to_owned(), repo.to_string_lossy().into_owned()),
            ("version".to_owned(), "1.0.0".to_owned()),
        ]);
        let (run, outcome) = engine
            .run(&pipeline, inputs, "alice", &root.join("work"))
            .await?;
        let Outcome::Waiting(requests) = outcome else {
            return Err(format!("expected the run to wait for approval, got {outcome:?}").into());
        };
        let st = engine.status(&run).await?;
        let tests = st.task("Build", "test");
        println!(
            "   clone, build and test ran ({}); the test report passed the 90% gate",
            tests.outputs["stdout"].as_str().unwrap_or_default().trim()
        );
        println!("   the run is parked on {requests:?}; no worker waits for it");
        let refused = engine
            .decide(&run, &requests[0], &Actor::user("alice"), true, "")
            .await;
        println!(
            "   alice, an approver who started the run, tries to approve: {}",
            refused.err().map_or("accepted?!".into(), |e| e.to_string())
        );
        engine
            .decide(&run, &requests[0], &Actor::user("bob"), true, "ship it")
            .await?;
        println!("   bob approves; the run is driven on from its journal");
        let outcome = engine.drive(&run).await?;
        if outcome != Outcome::Succeeded {
            return Err(format!("the run ended {outcome:?}").into());
        }
        let st = engine.status(&run).await?;
        let published = st.task("Release", "publish").outputs;
        let latest = artifacts.channel("prod", "app", "latest").await?;
        let last = latest.last().ok_or("the latest channel was not set")?;
        println!(
            "   published dev/app@1.0.0 as {} and promoted it to prod by digest",
            published["digest"].as_str().unwrap_or_default()
        );
        println!(
            "   prod channel `latest` -> {} (moved by {}: {})",
            last.version, last.actor, last.reason
        );
        let passed = artifacts.latest_passed("dev", "app", "Build").await?;
        println!(
            "   latest version that passed stage Build: {}",
            passed.map_or("none".into(), |v| v.reference.version)
        );
        println!(
            "   journal: {} durable transitions in {}",
            st.version,
            root.join("journal").display()
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    let _ = std::fs::remove_dir_all(&root);
    result?;
    Ok(Chapter::Done)
}
