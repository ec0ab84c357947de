//! Git through libgit2 (the `git2` crate, linked against the system's libgit2 1.5): clone or
//! fetch a real repository, check out a branch, tag or commit, and report the commit id.
//!
//! This is the IO behind the `Git` task kind ([`crate::task::Git`]); reference resolution is
//! kept in one place ([`checkout`]) so that a bad reference is a typed [`Error::GitRef`].
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! let co = pipeline_core::git::checkout(
//!     "/srv/git/app.git",
//!     std::path::Path::new("/tmp/app"),
//!     Some("v1.2.0"),
//!     &AtomicBool::new(false),
//! )?;
//! println!("{} at {}", co.directory.display(), co.commit);
//! # Ok::<(), pipeline_core::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{AutotagOption, FetchOptions, RemoteCallbacks, Repository};

use crate::Error;

/// What [`checkout`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkout {
    /// The commit checked out (40 hex digits).
    pub commit: String,
    /// The working tree.
    pub directory: PathBuf,
    /// Whether the repository was cloned (else an existing clone was fetched).
    pub cloned: bool,
}

/// The URL without user information (`https://user:token@host/x` → `https://***@host/x`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Clones `url` into `dir` (or, when `dir` already holds a clone, fetches its branches and tags
/// from `url`), checks out `reference` detached (a branch of the remote, a tag, a commit id or
/// any revision libgit2 understands; default: the remote's default branch) and returns the
/// commit id. Setting `cancel` stops a transfer in progress.
///
/// Errors: [`Error::GitRef`] when `reference` names nothing, [`Error::Git`] when libgit2 fails
/// (no such repository, network, a dirty checkout it cannot overwrite...).
pub fn checkout(
    url: &str,
    dir: &Path,
    reference: Option<&str>,
    cancel: &AtomicBool,
) -> Result<Checkout, Error> {
    let shown = redact_url(url);
    let fail = |what: &str| {
        let shown = shown.clone();
        let what = what.to_owned();
        move |e: git2::Error| Error::Git {
            context: format!("{what} {shown}"),
            message: e.message().replace(url, &shown),
        }
    };
    let fetch_options = || {
        let mut cb = RemoteCallbacks::new();
        cb.transfer_progress(|_| !cancel.load(Ordering::Relaxed));
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(cb);
        fo.download_tags(AutotagOption::All);
        fo
    };
    let cloned = !dir.join(".git").exists();
    let (repo, default_branch) = if cloned {
        let repo = RepoBuilder::new()
            .fetch_options(fetch_options())
            .clone(url, dir)
            .map_err(fail("cannot clone"))?;
        (repo, None)
    } else {
        let repo = Repository::open(dir).map_err(fail("cannot open the clone of"))?;
        let default = {
            let mut remote = repo.remote_anonymous(url).map_err(fail("cannot fetch"))?;
            remote
                .fetch(
                    &[
                        "+refs/heads/*:refs/remotes/origin/*",
                        "+refs/tags/*:refs/tags/*",
                    ],
                    Some(&mut fetch_options()),
                    None,
                )
                .map_err(fail("cannot fetch"))?;
            remote
                .default_branch()
                .ok()
                .and_then(|b| b.as_str().map(str::to_owned))
        };
        (repo, default)
    };
    let commit = match reference {
        Some(r) => resolve(&repo, r).ok_or_else(|| Error::GitRef {
            reference: r.to_owned(),
            url: shown.clone(),
        })?,
        None => match default_branch
            .as_deref()
            .and_then(|b| b.strip_prefix("refs/heads/"))
        {
            Some(branch) => resolve(&repo, branch).ok_or_else(|| Error::GitRef {
                reference: branch.to_owned(),
                url: shown.clone(),
            })?,
            None => repo
                .head()
                .and_then(|h| h.peel_to_commit())
                .map_err(fail("no default branch in"))?,
        },
    };
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().force()))
        .map_err(fail("cannot check out a commit of"))?;
    repo.set_head_detached(commit.id())
        .map_err(fail("cannot move HEAD in the clone of"))?;
    Ok(Checkout {
        commit: commit.id().to_string(),
        directory: dir.to_path_buf(),
        cloned,
    })
}

/// A branch of the remote first (what was just fetched), then any revision (tag, commit id,
/// `HEAD~1`...).
fn resolve<'r>(repo: &'r Repository, reference: &str) -> Option<git2::Commit<'r>> {
    if reference.is_empty() || reference.starts_with('-') {
        return None;
    }
    if let Ok(r) = repo.find_reference(&format!("refs/remotes/origin/{reference}"))
        && let Ok(c) = r.peel_to_commit()
    {
        return Some(c);
    }
    repo.revparse_single(reference)
        .ok()
        .and_then(|o| o.peel_to_commit().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/a/b.git"),
            "https://***@example.com/a/b.git"
        );
        assert_eq!(
            redact_url("https://example.com/a@b.git"),
            "https://example.com/a@b.git"
        );
        assert_eq!(redact_url("/srv/git/x.git"), "/srv/git/x.git");
    }
}
