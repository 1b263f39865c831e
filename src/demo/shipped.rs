//! The shipped configuration, carried inside the binary, so that an installed
//! `ketenpoort demo` plays from any directory (there is no `config/` beside
//! `/usr/bin/ketenpoort`). A test keeps the list equal to `config/pilots/`.

/// `config/partners.toml` as shipped.
pub const PARTNERS: &str = include_str!("../../config/partners.toml");

/// `config/pilots/*.toml` as shipped: file name and text.
pub const PILOTS: &[(&str, &str)] = &[
    (
        "amsterdam.toml",
        include_str!("../../config/pilots/amsterdam.toml"),
    ),
    (
        "eindhoven.toml",
        include_str!("../../config/pilots/eindhoven.toml"),
    ),
    (
        "groningen.toml",
        include_str!("../../config/pilots/groningen.toml"),
    ),
    (
        "rotterdam.toml",
        include_str!("../../config/pilots/rotterdam.toml"),
    ),
    (
        "utrecht.toml",
        include_str!("../../config/pilots/utrecht.toml"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_pilot_file_is_in_the_binary() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/pilots");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let carried: Vec<&str> = super::PILOTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            on_disk, carried,
            "add the new pilot file to src/demo/shipped.rs"
        );
    }
}
