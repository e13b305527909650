//! `steinadler cluster ...` (offline PKI, tokens, gossip key rotation) and `steinadler login`.

use crate::Failure;
use crate::auth::{self, NodeAddr};
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steinadler_node::{Client, ClientAuth};
use steinadler_security::{ClientCredentials, Material, Role, Token, pki};

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Write a new CA, cluster secret and gossip key to DIR (offline PKI).
    Init {
        /// The PKI directory; keep it offline and private.
        dir: PathBuf,
    },
    /// Write a node certificate to DIR/nodes/NAME, ready for `node start --secure`.
    Issue {
        /// The PKI directory from `cluster init`.
        dir: PathBuf,
        /// The node's name; it must match the node's --name.
        name: String,
        /// An IP address the certificate also covers, repeatable.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// A DNS name the certificate also covers, repeatable.
        #[arg(long)]
        dns: Vec<String>,
    },
    /// Write a client certificate to DIR/clients/NAME, for `--credentials`.
    IssueClient {
        /// The PKI directory from `cluster init`.
        dir: PathBuf,
        /// The user's name.
        name: String,
    },
    /// Print the node's join token again; `--new` replaces it with a new one.
    Token {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Make a new token: the old one stops working on this node (the node reloads it).
        #[arg(long)]
        new: bool,
    },
    /// Rotate the gossip encryption key on every live node: install, use, remove the old one.
    RotateGossipKey {
        /// The data directory of a node on this machine; its node certificate and cluster secret
        /// authorise the rotation.
        #[arg(long)]
        data_dir: PathBuf,
        /// The gRPC address of any live node.
        #[arg(long, env = "STEINADLER_NODE", default_value = "127.0.0.1:7100")]
        node: String,
    },
}

pub(crate) async fn run(cmd: ClusterCommand) -> Result<(), Failure> {
    match cmd {
        ClusterCommand::Init { dir } => {
            pki::init(&dir).map_err(|e| Failure::Usage(e.into()))?;
            println!(
                "wrote a cluster CA, cluster secret and gossip key to {} (mode 0600).\nnext: `steinadler cluster issue {} NODE_NAME` for each node",
                dir.display(),
                dir.display()
            );
        }
        ClusterCommand::Issue { dir, name, ip, dns } => {
            let out =
                pki::issue_node(&dir, &name, &ip, &dns).map_err(|e| Failure::Usage(e.into()))?;
            println!(
                "wrote node certificate for {name} to {}\nstart it with `steinadler node start --name {name} --secure {}`",
                out.display(),
                out.display()
            );
        }
        ClusterCommand::IssueClient { dir, name } => {
            let out = pki::issue_client(&dir, &name).map_err(|e| Failure::Usage(e.into()))?;
            println!(
                "wrote client certificate for {name} to {}\nuse it with `--credentials {}` or copy it to ~/.config/steinadler",
                out.display(),
                out.display()
            );
        }
        ClusterCommand::Token { data_dir, new } => {
            let dir = security_dir(&data_dir);
            let mut material = Material::load(&dir).map_err(|e| Failure::Usage(e.into()))?;
            if new {
                let ca_hash = material.ca_hash().map_err(|e| Failure::Runtime(e.into()))?;
                let token = Token::generate(ca_hash);
                material.token_secret = Some(token.secret);
                material
                    .save(&dir)
                    .map_err(|e| Failure::Runtime(e.into()))?;
                eprintln!("made a new token; the old one no longer works on this node");
            }
            let token = material.token().ok_or_else(|| {
                Failure::Usage(anyhow!(
                    "{} holds no token secret: this node cannot sign joins (offline PKI). Issue certificates with `steinadler cluster issue` instead",
                    dir.display()
                ))
            })?;
            println!("{token}");
        }
        ClusterCommand::RotateGossipKey { data_dir, node } => {
            let dir = security_dir(&data_dir);
            let material = Material::load(&dir).map_err(|e| Failure::Usage(e.into()))?;
            let mut client = Client::connect(&node, &ClientAuth::Node(Arc::new(material)))
                .await
                .map_err(|e| Failure::Runtime(e.into()))?;
            let nodes = client
                .rotate_gossip_key()
                .await
                .map_err(|e| Failure::Runtime(anyhow!("gossip key rotation failed: {e}")))?;
            println!(
                "rotated the gossip key on {} nodes: {}",
                nodes.len(),
                nodes.join(", ")
            );
        }
    }
    Ok(())
}

/// A node's data dir holds its material in `security/`; a `--secure` dir holds it directly.
fn security_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("security");
    if nested.join("node.crt").exists() {
        nested
    } else {
        dir.to_owned()
    }
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The join token a member prints (`steinadler cluster token`).
    #[arg(long, env = "STEINADLER_TOKEN")]
    token: String,
    /// The user name on the certificate [default: $USER].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn login(args: LoginArgs) -> Result<(), Failure> {
    let token: Token = args
        .token
        .parse()
        .map_err(|e: steinadler_security::TokenError| Failure::Usage(e.into()))?;
    let name = args
        .name
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "steinadler-user".to_owned());
    let joined = steinadler_node::request_certificate(&args.node.node, &token, Role::Client, &name)
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let creds = ClientCredentials {
        ca_cert_pem: joined.reply.ca_cert_pem,
        cert_pem: joined.reply.cert_pem,
        key_pem: joined.key_pem,
    };
    let dir = match args.node.credentials {
        Some(dir) => dir,
        None => auth::default_credentials_dir().map_err(Failure::Usage)?,
    };
    creds
        .save(&dir)
        .with_context(|| format!("cannot store the certificate in {}", dir.display()))
        .map_err(Failure::Runtime)?;
    println!(
        "logged in as {name}: client certificate stored in {}; commands use it from now on",
        dir.display()
    );
    Ok(())
}
