//! `mcp-gateway policy new NAME [--dir DIR] [--sdk PATH]`: a policy crate that passes `cargo test`, builds for
//! `wasm32-wasip2` and passes `mcp-gateway policy test fixtures/` as generated. The walkthrough in
//! policy-sdk/README.md is run on a fresh directory by `gateway/tests/it/cli.rs`.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO_TOML: &str = include_str!("policy_new/Cargo.toml.txt");
const LIB_RS: &str = include_str!("policy_new/lib.rs.txt");
const FIXTURES: &str = include_str!("policy_new/fixtures.json.txt");
const README: &str = include_str!("policy_new/README.md.txt");
const FIXTURE_SCHEMA: &str = include_str!("../../../policies/fixtures/fixture.schema.json");
const GITIGNORE: &str = "/target\n";

/// The policy-sdk of the checkout this binary was built from.
fn built_from_sdk() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-sdk");
    p.join("Cargo.toml")
        .is_file()
        .then(|| p.canonicalize().ok())?
}

pub fn run(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> anyhow::Result<()> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose another --dir (nothing was written)",
            dir.display()
        );
    }
    let sdk_dep = match sdk.map(Path::to_owned).or_else(built_from_sdk) {
        Some(sdk) => {
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("--sdk {}: no such directory", sdk.display()))?;
            if !sdk.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk {}: not a crate directory (no Cargo.toml)",
                    sdk.display()
                );
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let here = dir.canonicalize()?;
            let rel = relative(&here, &sdk);
            format!(
                "policy-sdk = {{ path = \"{}\" }}",
                rel.display().to_string().replace('\\', "/")
            )
        }
        None => {
            eprintln!(
                "note: the policy-sdk checkout this binary was built from is gone; depending on the git \
                 repository (give --sdk PATH for a local checkout)"
            );
            format!(
                "policy-sdk = {{ git = \"{}\" }}",
                env!("CARGO_PKG_REPOSITORY")
            )
        }
    };
    let crate_name = name.replace('-', "_");
    let type_name = camel(name);
    let fill = |t: &str| {
        t.replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
            .replace("__TYPE__", &type_name)
            .replace("__SDK__", &sdk_dep)
    };
    let files: [(&str, String); 6] = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("fixtures/policy.json", fill(FIXTURES)),
        ("fixtures/fixture.schema.json", FIXTURE_SCHEMA.to_owned()),
        ("README.md", fill(README)),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    println!("created policy crate `{name}` in {}", dir.display());
    for (rel, _) in &files {
        println!("  {rel}");
    }
    println!(
        "\nnext:\n  cd {}\n  cargo test\n  cargo build --target wasm32-wasip2 --release\n  mcp-gateway policy test fixtures/",
        dir.display()
    );
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "`{name}` is not a usable crate name: start with a letter, then letters, digits, `-` or `_` \
             (e.g. `block-deletes`)"
        );
    }
    if matches!(name, "test" | "policy_sdk" | "policy-sdk" | "core" | "std") {
        bail!("`{name}` would clash with a crate the policy uses: choose another name");
    }
    Ok(())
}

/// `block-deletes` → `BlockDeletes`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `to` relative to `from` (both absolute and canonical).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(camel("block-deletes"), "BlockDeletes");
        assert_eq!(camel("my_policy2"), "MyPolicy2");
        assert!(check_name("1abc").is_err() && check_name("a b").is_err());
        assert_eq!(
            relative(Path::new("/w/x/my-policy"), Path::new("/w/repo/policy-sdk")),
            Path::new("../../repo/policy-sdk")
        );
    }
}
