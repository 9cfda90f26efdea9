//! The configuration is documented where operators look for it: every variable
//! `file-engine --help` lists (clap's `env`, the one parser of `FE_*`) is in the README's
//! configuration table and the other way round, and every variable API.md names is one the
//! binary reads.

use std::collections::BTreeSet;

/// The `FE_*` names in the first column of the table rows of `section` (a `## ` heading).
fn table_variables(markdown: &str, section: &str) -> BTreeSet<String> {
    let body = markdown
        .split("\n## ")
        .find(|s| s.starts_with(section))
        .unwrap_or_else(|| panic!("no section {section:?}"));
    body.lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .flat_map(variables)
        .collect()
}

fn variables(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("FE_") && w.len() > 3)
        .map(str::to_owned)
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn help_readme_and_api_md_name_the_same_variables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_file-engine"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("file-engine --help");
    assert!(out.status.success(), "{out:?}");
    let help: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split("[env: ")
        .skip(1)
        .flat_map(|s| variables(s.split(['=', ']']).next().unwrap_or_default()))
        .collect();
    assert!(help.len() > 40, "{help:?}");

    let readme = table_variables(&read("README.md"), "Configuration");
    let undocumented: Vec<_> = help.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&help).collect();
    assert!(
        undocumented.is_empty(),
        "read by the binary, missing from the README's table: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "in the README's table, not read by the binary: {unknown:?}"
    );

    let contract = table_variables(&read("docs/API.md"), "Configuration");
    assert!(contract.len() > 5, "{contract:?}");
    let missing: Vec<_> = contract.difference(&help).collect();
    assert!(
        missing.is_empty(),
        "named by API.md, not read by the binary: {missing:?}"
    );
}
