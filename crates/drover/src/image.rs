//! `drover image`: import, list and remove images in the node agent's image
//! store (the one `drover server` pulls into), like `ctr images` / `crictl
//! images`. Safe beside a running server: the store locks itself.

use std::path::PathBuf;

use clap::Subcommand;
use images::{ImageReference, ImageStore, ImageSummary};

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The server's data dir (`drover server --data-dir`); images live in
    /// DATA_DIR/agent/images.
    #[arg(
        long,
        default_value = "/var/lib/drover",
        env = "DROVER_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import the images in a docker-archive (`docker save`) or an OCI
    /// archive (`skopeo copy … oci-archive:FILE:NAME:TAG`).
    Import { file: PathBuf },
    /// List images: IMAGE, TAG, IMAGE ID, SIZE.
    #[command(alias = "list")]
    Ls,
    /// Remove images by reference or image ID and free the layers no other
    /// image uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// Runs the command; on failure prints one line to stderr and returns the
/// exit code.
pub fn run(args: ImageArgs) -> i32 {
    match execute(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            1
        }
    }
}

fn execute(args: ImageArgs) -> Result<(), String> {
    let dir = images::store_dir(&args.data_dir);
    if !dir.exists() && matches!(args.command, ImageCommand::Ls) {
        // Nothing imported or pulled yet: list nothing, create nothing.
        print!("{}", table(&[]));
        return Ok(());
    }
    let store = ImageStore::open(&dir)
        .map_err(|e| format!("opening the image store {}: {e}", dir.display()))?;
    match args.command {
        ImageCommand::Import { file } => {
            let imported = store
                .import(&file)
                .map_err(|e| format!("importing {}: {e}", file.display()))?;
            for reference in imported {
                println!("imported {reference}");
            }
        }
        ImageCommand::Ls => {
            let list = store
                .list()
                .map_err(|e| format!("listing images in {}: {e}", dir.display()))?;
            print!("{}", table(&list));
        }
        ImageCommand::Rm { references } => {
            for reference in references {
                let removed = store
                    .remove(&reference)
                    .map_err(|e| format!("removing {reference}: {e}"))?;
                for reference in removed {
                    println!("Deleted: {reference}");
                }
            }
        }
    }
    Ok(())
}

/// The `crictl images` table.
fn table(list: &[ImageSummary]) -> String {
    let mut rows = vec![[
        "IMAGE".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    for image in list {
        let (name, tag) = match ImageReference::parse(&image.reference) {
            Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".to_string())),
            Err(_) => (image.reference.clone(), "<none>".to_string()),
        };
        let id = image.image_id.trim_start_matches("sha256:");
        rows.push([
            name,
            tag,
            id[..id.len().min(12)].to_string(),
            human_size(image.size),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 3 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(&line.join("   "));
        out.push('\n');
    }
    out
}

/// Sizes as crictl prints them (decimal units, 4 significant digits):
/// `742kB`, `1.084MB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let integer_digits = if value < 1.0 {
        1
    } else {
        (value.log10().floor() as usize) + 1
    };
    let decimals = 4usize.saturating_sub(integer_digits);
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_crictl() {
        for (bytes, text) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (742_000, "742kB"),
            (1_084_035, "1.084MB"),
            (2_220_000, "2.22MB"),
            (123_456_789, "123.5MB"),
            (5_000_000_000, "5GB"),
        ] {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn table_splits_references_into_image_and_tag() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let list = vec![
            ImageSummary {
                reference: "docker.io/library/busybox:1.36".to_string(),
                image_id: format!("sha256:{}", "0123456789abcdef".repeat(4)),
                size: 1_084_035,
            },
            ImageSummary {
                reference: format!("127.0.0.1:5000/app@{digest}"),
                image_id: format!("sha256:{}", "f".repeat(64)),
                size: 42,
            },
        ];
        let expected = "\
IMAGE                       TAG      IMAGE ID       SIZE
docker.io/library/busybox   1.36     0123456789ab   1.084MB
127.0.0.1:5000/app          <none>   ffffffffffff   42B
";
        assert_eq!(table(&list), expected);
    }
}
