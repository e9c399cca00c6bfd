//! `umpire crdgen`: the CRDs (and the Markdown reference) from the Rust types.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write one `<plural>.umpire.dev.yaml` per CRD into this folder instead of stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also write the CRDs as templates of the Helm chart in this folder
    /// (`<chart>/templates/crds/<plural>.umpire.dev.yaml`).
    #[arg(long, value_name = "CHART_DIR")]
    chart: Option<PathBuf>,
    /// Also write the Markdown field reference generated from the CRDs to this file.
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// Write nothing; print a diff and exit 1 when --out / --reference files are out of date.
    #[arg(long)]
    check: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let crds = umpire_api::crd::all();
    let mut stale = false;
    for crd in &crds {
        let yaml = umpire_api::crd::to_yaml(crd).context("serialising a CRD")?;
        match &args.out {
            Some(dir) => {
                let path = dir.join(umpire_api::crd::file_name(crd));
                let regenerate = format!("umpire crdgen --out {}", dir.display());
                stale |= emit(&path, &yaml, args.check, &regenerate)?;
            }
            None if args.reference.is_none() && args.chart.is_none() => print!("---\n{yaml}"),
            None => {}
        }
    }
    if let Some(chart) = &args.chart {
        for crd in &crds {
            let template = umpire_api::crd::to_chart_template(crd).context("serialising a CRD")?;
            let path = chart
                .join("templates/crds")
                .join(umpire_api::crd::file_name(crd));
            let regenerate = format!("umpire crdgen --chart {}", chart.display());
            stale |= emit(&path, &template, args.check, &regenerate)?;
        }
    }
    if let Some(path) = &args.reference {
        let markdown = umpire_api::reference::markdown(&crds);
        let regenerate = format!("umpire crdgen --reference {}", path.display());
        stale |= emit(path, &markdown, args.check, &regenerate)?;
    }
    Ok(if stale {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes `content` to `path`, or with `check` compares and prints a diff; true when stale.
fn emit(path: &Path, content: &str, check: bool, regenerate: &str) -> anyhow::Result<bool> {
    if check {
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed == content {
            return Ok(false);
        }
        let diff = similar::TextDiff::from_lines(&committed, content);
        eprintln!("{} is out of date; run `{regenerate}`:", path.display());
        eprint!(
            "{}",
            diff.unified_diff()
                .context_radius(2)
                .header("committed", "generated")
        );
        return Ok(true);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(false)
}
