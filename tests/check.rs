//! `umpire check` end to end: the examples pass; every rule has an invalid example that fails
//! with the field path and message a user needs.

#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Run {
    code: Option<i32>,
    stdout: String,
}

fn umpire_check(paths: &[&Path]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .arg("check")
        .args(paths)
        .current_dir(repo_root())
        .output()
        .expect("umpire runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

#[test]
fn examples_are_valid() {
    let run = umpire_check(&[Path::new("manifests/examples")]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "3 Umpire resource(s) checked: 3 valid, 0 invalid; 1 other document(s) skipped"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("note: skipped v1 ConfigMap"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_invalid_example_fails_naming_its_field() {
    let dir = repo_root().join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected one invalid example per rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expectations: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expectations.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let run = umpire_check(&[file]);
        if run.code != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, want 1\n{}",
                file.display(),
                run.code,
                run.stdout
            ));
            continue;
        }
        for expected in expectations {
            let found = run.stdout.lines().any(|line| {
                line.starts_with(&format!("{}:", file.display())) && line.contains(expected)
            });
            if !found {
                failures.push(format!(
                    "{}: no line with {expected:?}\n{}",
                    file.display(),
                    run.stdout
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn reports_file_line_resource_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.yaml");
    std::fs::write(
        &file,
        "apiVersion: umpire.dev/v1alpha1\nkind: TraceProject\nmetadata: {name: ok, namespace: a}\nspec: {}\n---\n\
         apiVersion: umpire.dev/v1alpha1\nkind: TraceProject\nmetadata: {name: bad, namespace: a}\nspec:\n  strem: {}\n",
    )
    .unwrap();
    let run = umpire_check(&[&file]);
    assert_eq!(run.code, Some(1));
    let expected = format!(
        "{}:6: TraceProject a/bad: spec.strem: unknown field; did you mean `stream`?",
        file.display()
    );
    assert!(run.stdout.lines().any(|l| l == expected), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("2 Umpire resource(s) checked: 1 valid, 1 invalid"),
        "{}",
        run.stdout
    );
}

#[test]
fn unreadable_paths_and_bad_yaml_fail() {
    let run = umpire_check(&[Path::new("does/not/exist.yaml")]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("does/not/exist.yaml: cannot read"),
        "{}",
        run.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "kind: [unclosed\n").unwrap();
    let run = umpire_check(&[&file]);
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("not valid YAML"), "{}", run.stdout);
}

#[test]
fn a_schema_ref_outside_the_checked_files_is_a_note_not_an_error() {
    let run = umpire_check(&[Path::new(
        "manifests/examples/answer-quality.evalpolicy.yaml",
    )]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout.contains("note: spec.judges[0].json.schemaRef: ConfigMap ml-apps/answer-schema key \"schema.json\" is not among the checked files"),
        "{}",
        run.stdout
    );
}
