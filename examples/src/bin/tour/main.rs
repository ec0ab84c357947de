//! The SDK's guided tour: walks through its capabilities on embedded defaults.
//!
//! Run it with `cargo run --release -p examples --bin tour`. Each chapter tells one capability's
//! story against the embedded defaults (the in-process vCenter simulator, local volumes, local
//! VMs, a local pipeline). A chapter whose capability is not built yet, or that needs something
//! this machine lacks, says so plainly and the tour moves on; a chapter that fails makes the tour
//! exit non-zero.
//!
//! Each chapter lives in its own module so that each crate's story is written beside the others
//! without touching them.

mod c_api;
mod pipeline;
mod vmenv;
mod volume;
mod vsphere;

use std::process::ExitCode;

/// How a chapter ended.
pub(crate) enum Outcome {
    /// The chapter told its story.
    Done,
    /// The chapter could not run here; the reason is printed.
    Skipped(String),
}

/// A chapter's result: an outcome, or an error that fails the tour.
pub(crate) type ChapterResult = Result<Outcome, Box<dyn std::error::Error>>;

/// One chapter: its title and the function that tells it.
struct Chapter {
    title: &'static str,
    run: fn() -> ChapterResult,
}

const CHAPTERS: &[Chapter] = &[
    Chapter {
        title: "vSphere inventory on the embedded simulator",
        run: vsphere::run,
    },
    Chapter {
        title: "A volume moves from one VM to another",
        run: volume::run,
    },
    Chapter {
        title: "A data center on a laptop",
        run: vmenv::run,
    },
    Chapter {
        title: "A pipeline with a gate and an approval",
        run: pipeline::run,
    },
    Chapter {
        title: "The SDK from C",
        run: c_api::run,
    },
];

fn main() -> ExitCode {
    println!("The vSphere SDK crate family: a tour");
    let mut failed = 0;
    for (n, chapter) in CHAPTERS.iter().enumerate() {
        println!("\n{}. {}\n", n + 1, chapter.title);
        match (chapter.run)() {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Skipped(why)) => println!("   (skipped: {why})"),
            Err(e) => {
                failed += 1;
                println!("   FAILED: {e}");
            }
        }
    }
    if failed > 0 {
        println!("\nTour finished with {failed} failed chapter(s).");
        return ExitCode::FAILURE;
    }
    println!("\nTour complete.");
    ExitCode::SUCCESS
}
