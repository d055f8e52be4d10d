//! PostgreSQL connections, shared by the stores that live in the database (`approvals.postgres`): the
//! approval store ([`crate::approvals::postgres`]) and the tool pins ([`crate::pins::postgres`]).
//!
//! One way to connect (connect timeout and application name defaulted, TLS through rustls with the system's
//! roots plus `approvals.postgres.ca_file`, the server's certificate and name always verified when TLS is
//! used), one call deadline, and one `LISTEN` loop that reconnects every second and wakes its waiters on every
//! notification and after every reconnect (so a notification sent while it was away is not waited on).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PostgresSettings;

/// Connect timeout when the connection string sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure talking to the database, as text (the stores wrap it in their own error).
pub type PgError = Box<dyn std::error::Error + Send + Sync>;

/// Where and how to connect: the parsed connection string and the TLS connector.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// `user@host:port/dbname sslmode=…`, for logs and messages (never the password).
    pub name: String,
}

impl Target {
    pub fn new(settings: &PostgresSettings) -> Result<Target, PgError> {
        let mut config: tokio_postgres::Config = settings.url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mcp-gateway");
        }
        Ok(Target {
            config,
            tls: MakeRustlsConnect::new(tls_config(settings.ca_file.as_deref())?),
            name: settings.target.clone(),
        })
    }

    /// A query connection: its I/O runs on its own task; the client reports closed once that task ends.
    pub async fn connect(&self, what: &'static str) -> Result<Client, PgError> {
        let (client, conn) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "{what}: PostgreSQL connection closed; reconnecting on next use");
            }
        });
        Ok(client)
    }

    /// `f` with the call deadline `limit`; `Err`: it did not finish in time (the message names the database).
    pub async fn timed<T>(&self, limit: Duration, f: impl Future<Output = T>) -> Result<T, String> {
        tokio::time::timeout(limit, f)
            .await
            .map_err(|_| format!("PostgreSQL {} did not answer within {limit:?}", self.name))
    }

    /// `LISTEN`s on `channel` for ever (run it on its own task): `woken` is notified on every notification and
    /// after every (re)connect; `subscribed` is sent once the first `LISTEN` is in place.
    pub async fn listen(
        self,
        what: &'static str,
        channel: &'static str,
        woken: Arc<Notify>,
        subscribed: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut subscribed = Some(subscribed);
        loop {
            match self.config.connect(self.tls.clone()).await {
                Ok((client, mut conn)) => {
                    let pump = async {
                        loop {
                            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                                Some(Ok(AsyncMessage::Notification(_))) => woken.notify_waiters(),
                                Some(Ok(_)) => {}
                                Some(Err(e)) => return e.to_string(),
                                None => return "connection closed".to_owned(),
                            }
                        }
                    };
                    // The pump drives the connection, so LISTEN completes while it runs.
                    tokio::pin!(pump);
                    let listen = format!("LISTEN {channel}");
                    let subscribed_now = tokio::select! {
                        r = client.batch_execute(&listen) => r.map_err(|e| e.to_string()),
                        e = &mut pump => Err(e),
                    };
                    let ended = match subscribed_now {
                        Ok(()) => {
                            if let Some(tx) = subscribed.take() {
                                let _ = tx.send(());
                            }
                            woken.notify_waiters();
                            pump.await
                        }
                        Err(e) => e,
                    };
                    tracing::warn!(error = %ended, "{what}: PostgreSQL LISTEN connection lost; polling until it is back");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: cannot open the PostgreSQL LISTEN connection; polling until it is back");
                }
            }
            woken.notify_waiters();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| -> PgError {
            format!("approvals.postgres.ca_file {}: {e}", path.display()).into()
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
        for c in certs {
            let c = c.map_err(|e| bad(&e))?;
            roots.add(c).map_err(|e| bad(&e))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// One query connection shared by every caller (`tokio-postgres` pipelines their statements), made on first
/// use and made again on the next call after it closed (server restart, idle cut, network).
pub struct Connection {
    target: Target,
    what: &'static str,
    slot: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Connection {
    /// `first`: a connection already made (at start), if any.
    pub fn new(target: Target, what: &'static str, first: Option<Client>) -> Connection {
        Connection {
            target,
            what,
            slot: tokio::sync::Mutex::new(first.map(Arc::new)),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The query connection, made again if it closed.
    pub async fn client(&self) -> Result<Arc<Client>, PgError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(self.target.connect(self.what).await?);
        tracing::info!(store = %self.target.name, "{}: connected to PostgreSQL", self.what);
        *slot = Some(c.clone());
        Ok(c)
    }
}
