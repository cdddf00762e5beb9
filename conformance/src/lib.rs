//! crius's CRI conformance suite: cases that judge any CRI v1 endpoint (crius, or the
//! reference, containerd's built-in CRI), the runner that executes them, and the harness that
//! starts private daemons for the project's own tests.

pub mod cases;
pub mod harness;
pub mod images;
pub mod pins;
pub mod reference;
pub mod runner;
pub mod verdict;
