//! `umpire check PATH...`: validate manifests offline with the CRD schema, its CEL rules and
//! Umpire's own rules. Exit 0 when every Umpire resource is valid, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use umpire_api::manifest::{self, ManifestConfigMaps};
use umpire_api::validate::{DocumentKind, Validator, classify};

#[derive(clap::Args)]
pub struct Args {
    /// YAML/JSON files or folders (searched recursively for *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn describe(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let validator = Validator::new().context("loading the generated CRDs")?;
    let mut documents = Vec::new();
    let mut unreadable = Vec::new();
    for path in &args.paths {
        let files = match manifest::manifest_files(path) {
            Ok(files) => files,
            Err(e) => {
                unreadable.push(e);
                continue;
            }
        };
        for file in files {
            match manifest::read_documents(&file) {
                Ok(parsed) => {
                    for document in parsed {
                        match document {
                            Ok(document) => documents.push(document),
                            Err(e) => unreadable.push(e),
                        }
                    }
                }
                Err(e) => unreadable.push(e),
            }
        }
    }
    for error in &unreadable {
        println!("{error}");
    }

    let config_maps = ManifestConfigMaps::collect(&documents);
    let (mut valid, mut invalid, mut skipped) = (0, 0, 0);
    for document in &documents {
        let location = format!("{}:{}", document.file.display(), document.line);
        let what = describe(&document.object);
        match classify(&document.object) {
            DocumentKind::Foreign { api_version, kind } => {
                skipped += 1;
                let api = if api_version.is_empty() {
                    "<no apiVersion>".to_owned()
                } else {
                    api_version
                };
                let kind = if kind.is_empty() {
                    "<no kind>".to_owned()
                } else {
                    kind
                };
                println!("{location}: note: skipped {api} {kind} (not an Umpire resource)");
            }
            DocumentKind::UnknownUmpire(message) => {
                invalid += 1;
                println!("{location}: {what}: {message}");
            }
            DocumentKind::Umpire(kind) => {
                let outcome = validator.validate(kind, &document.object, &config_maps);
                for note in &outcome.findings.notes {
                    println!("{location}: {what}: note: {note}");
                }
                if outcome.findings.errors.is_empty() {
                    valid += 1;
                } else {
                    invalid += 1;
                    for error in &outcome.findings.errors {
                        println!("{location}: {what}: {error}");
                    }
                }
            }
        }
    }
    println!(
        "{} Umpire resource(s) checked: {valid} valid, {invalid} invalid; {skipped} other document(s) skipped{}",
        valid + invalid,
        if unreadable.is_empty() {
            String::new()
        } else {
            format!("; {} file(s)/document(s) unreadable", unreadable.len())
        }
    );
    let ok = invalid == 0 && unreadable.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
