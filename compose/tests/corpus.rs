//! The public compose and stack files of ../shared/compose-corpus (or
//! `SHOAL_COMPOSE_CORPUS`) through what the loader has so far: each parses into a located
//! tree or fails with a line, and every string in it interpolates or names the variable
//! it needs. Nothing panics. Skipped when the corpus is not beside the repository.

use std::path::PathBuf;

use shoal_compose::keys::check_keys;
use shoal_compose::yaml::{parse, Node, Value};
use shoal_compose::{interpolate, InterpolateError};

/// The corpus's compose files, sorted; `None` (the test skips) when it is not there.
fn corpus() -> Option<Vec<PathBuf>> {
    let dir = std::env::var_os("SHOAL_COMPOSE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/compose-corpus")
        });
    if !dir.is_dir() {
        eprintln!("SKIPPED: no compose corpus (set SHOAL_COMPOSE_CORPUS)");
        return None;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    Some(files)
}

/// Every string scalar of `node`, with its line.
fn strings<'a>(node: &'a Node, out: &mut Vec<(u64, &'a str)>) {
    match &node.value {
        Value::Str(s) => out.push((node.pos.line, s)),
        Value::Seq(items) => items.iter().for_each(|n| strings(n, out)),
        Value::Map(entries) => entries.iter().for_each(|(_, n)| strings(n, out)),
        _ => {}
    }
}

#[test]
fn every_corpus_file_parses_or_fails_with_a_line_and_interpolates_or_names_its_variable() {
    let Some(files) = corpus() else {
        return;
    };
    assert!(
        files.len() >= 40,
        "the corpus has its files: {}",
        files.len()
    );
    let mut parsed = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("utf-8 file");
        let doc = match parse(&text) {
            Ok(doc) => doc,
            Err(e) => {
                assert!(
                    e.pos.line > 0,
                    "{}: an error without a line: {e}",
                    file.display()
                );
                assert!(e.message.contains("set twice"), "{}: {e}", file.display());
                continue;
            }
        };
        parsed += 1;
        let name = file.display().to_string();
        if let Err(e) = check_keys(&doc, &name) {
            panic!("a valid compose key refused: {e}");
        }
        let mut found = Vec::new();
        strings(&doc, &mut found);
        for (line, s) in found {
            assert!(line > 0, "{}: a value without a line", file.display());
            match interpolate(s, &|_| None) {
                Ok(_) => {}
                Err(InterpolateError::Required { name, .. }) => assert!(!name.is_empty()),
                Err(e @ InterpolateError::Syntax { .. }) => {
                    panic!("{}:{line}: {e} in {s:?}", file.display())
                }
            }
        }
    }
    // One corpus file sets `deploy` twice in a service: refused, with its line, above.
    assert!(
        parsed >= files.len() - 1,
        "{parsed} of {} parsed",
        files.len()
    );
}

/// What `shoal stack config -c FILE` does with each corpus file, with no variable set:
/// resolved, or refused with the file and line first.
#[test]
fn stack_config_resolves_every_corpus_file_or_refuses_it_with_file_and_line() {
    let Some(entries) = corpus() else {
        return;
    };
    let mut resolved = 0;
    for file in &entries {
        let files = [file.clone()];
        let environment = |_: &str| None;
        match shoal_compose::load(&shoal_compose::Request {
            files: &files,
            env_file: None,
            profiles: &[],
            environment: &environment,
        }) {
            Ok(loaded) => {
                resolved += 1;
                shoal_compose::to_yaml(&loaded.document).expect("printable");
            }
            Err(e) => {
                let text = e.to_string();
                eprintln!("refused: {text}");
                let located = text
                    .strip_prefix(&format!("{}:", file.display()))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
                assert!(located, "refused without file:line: {text}");
            }
        }
    }
    // The rest need an env_file, a required variable, or have a key set twice.
    assert!(resolved >= 30, "{resolved} of {} resolved", entries.len());
}
