//! Validation of the `telemetry.otlp:` block (see [`crate::otel`]).

use super::Validator;
use crate::config::file::FileOtlp;
use crate::config::{ConfigError, OtlpSettings};

const OTLP_EXAMPLE: &str = "for example\n  telemetry:\n    otlp:\n      endpoint: http://127.0.0.1:4318\n      sample_ratio: 0.1";

impl Validator<'_> {
    pub(super) fn otlp(&self, o: FileOtlp) -> Result<OtlpSettings, ConfigError> {
        let Some(raw) = o.endpoint.as_deref().map(str::trim) else {
            return Err(self.invalid(
                "telemetry.otlp.endpoint",
                format!("is required: where the OTLP/HTTP receiver listens, {OTLP_EXAMPLE}"),
            ));
        };
        let uri: http::Uri = raw.parse().map_err(|e| {
            self.invalid(
                "telemetry.otlp.endpoint",
                format!("`{raw}` is not a URL ({e}); {OTLP_EXAMPLE}"),
            )
        })?;
        let https = uri.scheme_str() == Some("https");
        if !(https || uri.scheme_str() == Some("http")) || uri.host().is_none() {
            return Err(self.invalid(
                "telemetry.otlp.endpoint",
                format!("`{raw}` must be http://host:port or https://host:port (OTLP/HTTP)"),
            ));
        }
        let ca_file = match o.ca_file {
            None => None,
            Some(f) if !https => {
                return Err(self.invalid(
                    "telemetry.otlp.ca_file",
                    format!("`{f}` is only used with an https:// endpoint"),
                ));
            }
            Some(f) => {
                std::fs::metadata(&f)
                    .map_err(|e| self.invalid("telemetry.otlp.ca_file", format!("{f}: {e}")))?;
                Some(std::path::PathBuf::from(f))
            }
        };
        if uri.query().is_some() {
            return Err(self.invalid("telemetry.otlp.endpoint", format!("`{raw}` has a query")));
        }
        // The OTLP exporter spec: a base endpoint gets the signal path; a given path is used as written.
        let endpoint = match uri.path() {
            "" | "/" => format!("{}/v1/traces", raw.trim_end_matches('/'))
                .parse()
                .map_err(|e| self.invalid("telemetry.otlp.endpoint", format!("`{raw}`: {e}")))?,
            _ => uri,
        };
        let sample_ratio = o.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(self.invalid(
                "telemetry.otlp.sample_ratio",
                format!("is {sample_ratio}: must be between 0.0 and 1.0"),
            ));
        }
        let service_name = o.service_name.unwrap_or_else(|| "mcp-gateway".into());
        if service_name.trim().is_empty() {
            return Err(self.invalid("telemetry.otlp.service_name", "is empty"));
        }
        let mut headers = Vec::new();
        for (name, value) in o.headers.unwrap_or_default() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.invalid(
                    &format!("telemetry.otlp.headers.{name}"),
                    "is not a valid HTTP header name",
                ));
            }
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(self.invalid(
                    &format!("telemetry.otlp.headers.{name}"),
                    "is not a valid HTTP header value",
                ));
            }
            headers.push((name, value));
        }
        let timeout = self.duration("telemetry.otlp.timeout", o.timeout.as_deref(), 10)?;
        if timeout.is_zero() {
            return Err(self.invalid("telemetry.otlp.timeout", "must be longer than 0s"));
        }
        Ok(OtlpSettings {
            endpoint,
            ca_file,
            service_name,
            sample_ratio,
            headers,
            timeout,
        })
    }
}
