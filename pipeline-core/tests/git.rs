//! The Git task's library (libgit2) on real repositories: a bare repository made with the `git`
//! command, cloned, fetched and checked out at a branch, a tag and a commit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use pipeline_core::Error;
use pipeline_core::git::checkout;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pc-git-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A bare repository with `main` (two commits, the first tagged `v1`) and `feature`.
struct Origin {
    work: PathBuf,
    bare: PathBuf,
    first: String,
    second: String,
    feature: String,
}

fn origin(d: &Path) -> Origin {
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "1").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "-a", "v1", "-m", "release 1"]);
    git(&work, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(work.join("a.txt"), "feature").unwrap();
    git(&work, &["commit", "--quiet", "-am", "feature"]);
    let feature = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["checkout", "--quiet", "main"]);
    std::fs::write(work.join("a.txt"), "2").unwrap();
    git(&work, &["commit", "--quiet", "-am", "two"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    let bare = d.join("origin.git");
    git(
        d,
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    Origin {
        work,
        bare,
        first,
        second,
        feature,
    }
}

#[test]
fn clone_then_check_out_branches_tags_and_commits() {
    let d = tempdir("refs");
    let o = origin(&d);
    let url = o.bare.to_str().unwrap();
    let dir = d.join("clone");
    let no = AtomicBool::new(false);

    // Clone: the remote's default branch.
    let co = checkout(url, &dir, None, &no).unwrap();
    assert!(co.cloned);
    assert_eq!(co.commit, o.second);
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "2");

    // The existing clone is fetched, not cloned again; a tag (annotated) peels to its commit.
    let co = checkout(url, &dir, Some("v1"), &no).unwrap();
    assert!(!co.cloned);
    assert_eq!(co.commit, o.first);
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "1");
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), o.first);

    // A branch of the remote.
    let co = checkout(url, &dir, Some("feature"), &no).unwrap();
    assert_eq!(co.commit, o.feature);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "feature"
    );

    // A commit id, full or abbreviated.
    let co = checkout(url, &dir, Some(&o.first[..10]), &no).unwrap();
    assert_eq!(co.commit, o.first);
    let co = checkout(url, &dir, Some(&o.second), &no).unwrap();
    assert_eq!(co.commit, o.second);

    // A new commit pushed to the origin is fetched: the branch moves.
    std::fs::write(o.work.join("a.txt"), "3").unwrap();
    git(&o.work, &["commit", "--quiet", "-am", "three"]);
    let third = git(&o.work, &["rev-parse", "HEAD"]);
    git(&o.work, &["push", "--quiet", url, "main"]);
    let co = checkout(url, &dir, Some("main"), &no).unwrap();
    assert_eq!(co.commit, third);
    // Without a ref, an existing clone goes to the remote's default branch too.
    checkout(url, &dir, Some("v1"), &no).unwrap();
    let co = checkout(url, &dir, None, &no).unwrap();
    assert_eq!(co.commit, third);
}

#[test]
fn a_bad_ref_is_a_typed_error_and_changes_nothing() {
    let d = tempdir("badref");
    let o = origin(&d);
    let url = o.bare.to_str().unwrap();
    let dir = d.join("clone");
    let no = AtomicBool::new(false);
    checkout(url, &dir, Some("v1"), &no).unwrap();
    for bad in [
        "no-such-branch",
        "v9",
        "deadbeefdeadbeef",
        "--upload-pack=x",
        "",
    ] {
        let e = checkout(url, &dir, Some(bad), &no).unwrap_err();
        match &e {
            Error::GitRef { reference, url: u } => {
                assert_eq!(reference, bad);
                assert_eq!(u, url);
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(e.to_string().contains("no branch, tag or commit"), "{e}");
    }
    // The working tree stayed at v1.
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]), o.first);
}

#[test]
fn a_missing_repository_fails_without_showing_credentials() {
    let d = tempdir("missing");
    let no = AtomicBool::new(false);
    let e = checkout(
        d.join("nothing-here.git").to_str().unwrap(),
        &d.join("a"),
        None,
        &no,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Git { .. }), "{e:?}");
    // Nothing listens on port 1: the error names the host but never the password.
    let e = checkout(
        "http://bob:hunter2@127.0.0.1:1/repo.git",
        &d.join("b"),
        None,
        &no,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Git { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
}
