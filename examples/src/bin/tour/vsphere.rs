//! The tour's chapter for `vsphere-client`.

use crate::{ChapterResult, Outcome};

/// Tells this chapter's story.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the chapter's real story can fail; this placeholder cannot"
)]
pub(crate) fn run() -> ChapterResult {
    println!("   vsphere-client: {}", vsphere_client::CAPABILITY);
    Ok(Outcome::Skipped(
        "this chapter's demonstration arrives with its issue".to_owned(),
    ))
}
