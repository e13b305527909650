//! How CLI commands authenticate to a node: the client certificate `steinadler login` stored,
//! another credentials directory, or plaintext for `--insecure` clusters.

use crate::Failure;
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use steinadler_node::{Client, ClientAuth};
use steinadler_security::{ClientCredentials, identity_of};

/// Which node to talk to, and how.
#[derive(Debug, Args, Clone)]
pub(crate) struct NodeAddr {
    /// The gRPC address of any node in the cluster.
    #[arg(long, env = "STEINADLER_NODE", default_value = "127.0.0.1:7100")]
    pub(crate) node: String,
    /// Talk plaintext, to a cluster started with `--insecure`.
    #[arg(long, env = "STEINADLER_INSECURE")]
    pub(crate) insecure: bool,
    /// A directory with ca.crt, client.crt and client.key [default: the one `steinadler login`
    /// writes, ~/.config/steinadler].
    #[arg(long, env = "STEINADLER_CREDENTIALS")]
    pub(crate) credentials: Option<PathBuf>,
}

impl NodeAddr {
    /// The credentials these flags select.
    pub(crate) fn auth(&self) -> Result<ClientAuth, Failure> {
        if self.insecure {
            return Ok(ClientAuth::Insecure);
        }
        let dir = self.credentials_dir().map_err(Failure::Usage)?;
        if !dir.join("client.crt").exists() {
            return Err(Failure::Usage(anyhow!(
                "no client certificate in {}: run `steinadler login --node ADDR --token TOKEN` \
                 first (a member prints the token with `steinadler cluster token`), pass \
                 --credentials DIR, or --insecure for a cluster started with --insecure",
                dir.display()
            )));
        }
        let creds = ClientCredentials::load(&dir).map_err(|e| Failure::Usage(e.into()))?;
        Ok(ClientAuth::Certificate(Arc::new(creds)))
    }

    /// Connects to the node. A client certificate two thirds through its lifetime is renewed
    /// on the way, once per command ([`renew_if_due`]).
    pub(crate) async fn connect(&self) -> Result<Client, Failure> {
        let auth = self.auth()?;
        let client = Client::connect(&self.node, &auth)
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
        if let ClientAuth::Certificate(creds) = &auth
            && !RENEWAL_TRIED.swap(true, Ordering::Relaxed)
        {
            let dir = self.credentials_dir().map_err(Failure::Usage)?;
            renew_if_due(&client, creds, &dir).await;
        }
        Ok(client)
    }

    /// Connects to another node of the same cluster with the same credentials.
    pub(crate) async fn connect_to(&self, addr: &str) -> Result<Client, Failure> {
        let auth = self.auth()?;
        Client::connect(addr, &auth)
            .await
            .map_err(|e| Failure::Runtime(e.into()))
    }

    /// Connects to the member `name` as `ListMembers` listed it: at its address `addr`, or
    /// through its relays (`relay_addrs`) if it accepts no connections (`--no-inbound`).
    pub(crate) async fn connect_to_member(
        &self,
        name: &str,
        addr: &str,
        relay_addrs: &[String],
    ) -> Result<Client, Failure> {
        if relay_addrs.is_empty() {
            return self.connect_to(addr).await;
        }
        let auth = self.auth()?;
        Client::connect_through(relay_addrs, name, &auth)
            .await
            .map_err(|e| Failure::Runtime(e.into()))
    }

    fn credentials_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.credentials {
            Some(dir) => Ok(dir.clone()),
            None => default_credentials_dir(),
        }
    }
}

/// Set once a command has looked at its certificate's renewal: two renewals at once could
/// leave one's key beside the other's certificate.
static RENEWAL_TRIED: AtomicBool = AtomicBool::new(false);

/// Renews `creds` through `client` and saves them to `dir` once the certificate is two thirds
/// through its lifetime. A failure is a warning, not an error: the current certificate still
/// works until it expires, and the next command tries again.
async fn renew_if_due(client: &Client, creds: &ClientCredentials, dir: &std::path::Path) {
    let Ok(identity) =
        steinadler_security::first_cert_der(&creds.cert_pem).and_then(|d| identity_of(&d))
    else {
        return;
    };
    if SystemTime::now() < identity.renew_at() {
        return;
    }
    let left = identity
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    match client.renew_certificate(creds).await {
        Ok(renewed) => match renewed.save(dir) {
            Ok(()) => tracing::info!(dir = %dir.display(), "renewed the client certificate"),
            Err(e) => tracing::warn!("cannot save the renewed client certificate: {e}"),
        },
        Err(e) => tracing::warn!(
            seconds_left = left.as_secs(),
            "the client certificate is due for renewal, and renewing it failed: {e}. Run \
             `steinadler login` again before it expires"
        ),
    }
}

/// `$XDG_CONFIG_HOME/steinadler`, or `~/.config/steinadler`.
pub(crate) fn default_credentials_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("steinadler"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            anyhow!("neither XDG_CONFIG_HOME nor HOME is set: pass --credentials DIR")
        })?;
    Ok(PathBuf::from(home).join(".config").join("steinadler"))
}
