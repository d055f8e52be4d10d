//! Relative paths in a config file resolve against the config file's directory, not the working directory:
//! `mcp-gateway serve --config /etc/gw/config.yaml` with `cert_file: ./pki/tls.crt` reads
//! `/etc/gw/pki/tls.crt` wherever it was started from. Done once, on the file structs, before validation, so
//! every check and every error names the path that is really used; [`RelativePath`]s remember what was
//! written, so errors about those files can say how the path came about.

use std::path::{Component, Path, PathBuf};

use super::file::FileConfig;

/// A path the config wrote relative, and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativePath {
    /// The key, e.g. `tls.cert_file`, `policies.modules.guard.path`.
    pub field: String,
    pub written: String,
    pub resolved: PathBuf,
}

/// Rewrites every relative path of `f` against `base` (the config file's directory). Nothing changes when
/// `base` is empty (a config named without a directory: its directory is the working directory).
pub fn resolve(f: &mut FileConfig, base: &Path) -> Vec<RelativePath> {
    let mut out = Vec::new();
    if base.as_os_str().is_empty() {
        return out;
    }
    let base = &std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
    let mut fix = |field: &str, p: &mut Option<String>| {
        if let Some(s) = p.as_mut() {
            fix_one(field, s, base, &mut out);
        }
    };
    if let Some(t) = f.tls.as_mut() {
        fix("tls.cert_file", &mut t.cert_file);
        fix("tls.key_file", &mut t.key_file);
    }
    if let Some(t) = f.upstream.as_mut().and_then(|u| u.tls.as_mut()) {
        fix("upstream.tls.ca_file", &mut t.ca_file);
    }
    if let Some(a) = f.audit.as_mut() {
        fix("audit.dir", &mut a.dir);
        fix("audit.signing_key_file", &mut a.signing_key_file);
    }
    if let Some(p) = f.policies.as_mut() {
        fix("policies.cache_dir", &mut p.cache_dir);
        for (name, m) in p.modules.iter_mut() {
            let mut path = Some(std::mem::take(&mut m.path));
            fix(&format!("policies.modules.{name}.path"), &mut path);
            m.path = path.unwrap_or_default();
        }
    }
    if let Some(a) = f.approvals.as_mut() {
        fix("approvals.db", &mut a.db);
        if let Some(pg) = a.postgres.as_mut() {
            fix("approvals.postgres.url_file", &mut pg.url_file);
            fix("approvals.postgres.ca_file", &mut pg.ca_file);
        }
        if let Some(w) = a.webhook.as_mut() {
            fix("approvals.webhook.ca_file", &mut w.ca_file);
            fix("approvals.webhook.secret_file", &mut w.secret_file);
        }
        for (i, ap) in a.approvers.iter_mut().enumerate() {
            fix(
                &format!("approvals.approvers[{i}].token_file"),
                &mut ap.token_file,
            );
        }
        if let Some(c) = a.caller_confirmation.as_mut() {
            fix(
                "approvals.caller_confirmation.secret_file",
                &mut c.secret_file,
            );
        }
        if let Some(j) = a.jwt.as_mut() {
            fix("approvals.jwt.jwks_file", &mut j.jwks_file);
            fix("approvals.jwt.jwks_ca_file", &mut j.jwks_ca_file);
        }
    }
    if let Some(j) = f.identity.as_mut().and_then(|i| i.jwt.as_mut()) {
        fix("identity.jwt.jwks_file", &mut j.jwks_file);
        fix("identity.jwt.jwks_ca_file", &mut j.jwks_ca_file);
    }
    if let Some(o) = f.telemetry.as_mut().and_then(|t| t.otlp.as_mut()) {
        fix("telemetry.otlp.ca_file", &mut o.ca_file);
    }
    out
}

fn fix_one(field: &str, s: &mut String, base: &Path, out: &mut Vec<RelativePath>) {
    // Empty values are left for the validator to explain.
    if s.trim().is_empty() || Path::new(s.as_str()).is_absolute() {
        return;
    }
    let written: PathBuf = Path::new(s.as_str())
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let resolved = base.join(written);
    out.push(RelativePath {
        field: field.to_owned(),
        written: s.clone(),
        resolved: resolved.clone(),
    });
    *s = resolved.display().to_string();
}

/// For an error message that names a resolved path: how it came about. `None` when it names none.
pub fn explain(relative: &[RelativePath], message: &str) -> Option<String> {
    let hits: Vec<String> = relative
        .iter()
        .filter(|r| message.contains(&r.resolved.display().to_string()))
        .map(|r| format!("`{}: {}` → {}", r.field, r.written, r.resolved.display()))
        .collect();
    (!hits.is_empty()).then(|| {
        format!(
            "(relative paths in the config resolve against the config file's directory: {})",
            hits.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let yaml = "tls: {cert_file: ./pki/tls.crt, key_file: /abs/tls.key}\naudit: {dir: audit}\n\
                    policies: {modules: {g: {path: p/g.wasm}}}\n";
        let mut f: FileConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let rel = resolve(&mut f, Path::new("/etc/gw"));
        let tls = f.tls.as_ref().unwrap();
        assert_eq!(tls.cert_file.as_deref(), Some("/etc/gw/pki/tls.crt"));
        assert_eq!(tls.key_file.as_deref(), Some("/abs/tls.key"));
        assert_eq!(f.audit.unwrap().dir.as_deref(), Some("/etc/gw/audit"));
        assert_eq!(f.policies.unwrap().modules["g"].path, "/etc/gw/p/g.wasm");
        assert_eq!(rel.len(), 3);
        let e = explain(&rel, "cannot read /etc/gw/audit: denied").unwrap();
        assert!(e.contains("`audit.dir: audit` → /etc/gw/audit"), "{e}");
        assert!(explain(&rel, "cannot read /abs/tls.key").is_none());
    }
}
