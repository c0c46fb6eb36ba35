//! `drover image import/ls/rm` through the built binary, on archives made
//! by skopeo from a busybox image built with umoci.

use std::path::Path;
use std::process::{Command, Output};

use images::testing::ImageBuilder;

fn drover(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DROVER_DATA_DIR")
        .output()
        .expect("running drover")
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = drover(data_dir, args);
    assert!(
        out.status.success(),
        "drover image {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn import_list_and_remove_through_the_cli() {
    let image = ImageBuilder::busybox(&["sh"]);
    let scratch = tempfile::tempdir().unwrap();
    let docker_archive = scratch.path().join("busybox.tar");
    let oci_archive = scratch.path().join("app.tar");
    image.save_docker_archive(&docker_archive, "busybox:1.36");
    image.save_oci_archive(&oci_archive, "127.0.0.1:5000/team/app:v1");
    let data_dir = scratch.path().join("data");

    assert_eq!(ok(&data_dir, &["ls"]), "IMAGE   TAG   IMAGE ID   SIZE\n");
    assert!(!data_dir.exists(), "listing creates nothing");
    assert_eq!(
        ok(&data_dir, &["import", docker_archive.to_str().unwrap()]),
        "imported docker.io/library/busybox:1.36\n"
    );
    assert_eq!(
        ok(&data_dir, &["import", oci_archive.to_str().unwrap()]),
        "imported 127.0.0.1:5000/team/app:v1\n"
    );
    assert!(
        images::store_dir(&data_dir).join("index.json").is_file(),
        "the store is where the agent will look"
    );

    let listing = ok(&data_dir, &["ls"]);
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines[0],
        vec!["IMAGE", "TAG", "IMAGE ID", "SIZE"],
        "{listing}"
    );
    assert_eq!(lines.len(), 3, "{listing}");
    assert_eq!(
        lines[1][..2],
        ["127.0.0.1:5000/team/app", "v1"],
        "{listing}"
    );
    assert_eq!(
        lines[2][..2],
        ["docker.io/library/busybox", "1.36"],
        "{listing}"
    );
    assert_eq!(lines[1][2].len(), 12, "12-hex image ID: {listing}");
    assert!(lines[1][2].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        lines[1][3].ends_with("MB") || lines[1][3].ends_with("kB"),
        "{listing}"
    );

    assert_eq!(
        ok(&data_dir, &["rm", "busybox:1.36"]),
        "Deleted: docker.io/library/busybox:1.36\n"
    );
    assert_eq!(ok(&data_dir, &["ls"]).lines().count(), 2);
    let again = drover(&data_dir, &["rm", "busybox:1.36"]);
    assert!(!again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "error: removing busybox:1.36: image \"docker.io/library/busybox:1.36\" not found\n"
    );
    let id = lines[1][2].to_string();
    assert_eq!(
        ok(&data_dir, &["rm", &id]),
        "Deleted: 127.0.0.1:5000/team/app:v1\n",
        "rm by image ID"
    );
    assert_eq!(
        ok(&data_dir, &["ls"]).lines().count(),
        1,
        "only the header left"
    );
    let layers = images::store_dir(&data_dir).join("layers");
    assert_eq!(
        std::fs::read_dir(&layers).unwrap().count(),
        0,
        "layers collected"
    );
}

#[test]
fn malformed_or_missing_archives_fail_with_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let junk = scratch.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    for (file, want) in [
        (junk.clone(), "not a readable tar archive"),
        (
            scratch.path().join("missing.tar"),
            "No such file or directory",
        ),
    ] {
        let out = drover(&data_dir, &["import", file.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "importing {} should fail",
            file.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: importing {}: ", file.display()))
                && stderr.contains(want),
            "{stderr}"
        );
    }
}

#[test]
fn two_imports_at_once_share_one_layer() {
    let image = ImageBuilder::busybox(&["sh"]);
    let scratch = tempfile::tempdir().unwrap();
    let a = scratch.path().join("a.tar");
    let b = scratch.path().join("b.tar");
    image.save_docker_archive(&a, "busybox:a");
    image.save_oci_archive(&b, "busybox:b");
    let data_dir = scratch.path().join("data");
    // Two processes against one store, as a CLI beside a server would be.
    let spawn = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["image", "import"])
            .arg(file)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
    };
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| spawn(&a));
        let second = s.spawn(|| spawn(&b));
        (
            first.join().unwrap().unwrap(),
            second.join().unwrap().unwrap(),
        )
    });
    for out in [&first, &second] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(ok(&data_dir, &["ls"]).lines().count(), 3);
    let store = images::store_dir(&data_dir);
    assert_eq!(
        std::fs::read_dir(store.join("layers")).unwrap().count(),
        1,
        "one layer directory"
    );
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "nothing left half-done"
    );
}
