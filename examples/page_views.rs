//! The README's "Writing a projector in Rust": a binary of your own with one
//! more projector registered. `cargo run --example page_views -- check --config
//! FILE` accepts definitions naming `projector = "page_views"`.

use projectionist::event::Event;
use projectionist::projector::{Outcome, Projector, ProjectorError, Registry};
use serde_json::{Value, json};

struct PageViews;

impl Projector for PageViews {
    fn project(&self, current: Option<&Value>, _event: &Event) -> Result<Outcome, ProjectorError> {
        let views = current.and_then(|c| c["views"].as_u64()).unwrap_or(0);
        Ok(Outcome::Upsert(json!({ "views": views + 1 })))
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = Registry::with_builtins();
    registry.register("page_views", PageViews);
    projectionist::cli::main_with(registry)
}
