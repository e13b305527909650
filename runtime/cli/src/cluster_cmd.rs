//! `steinadler cluster ...` (offline PKI, tokens, gossip key rotation) and `steinadler login`.

use crate::Failure;
use crate::auth::{self, NodeAddr};
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
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
    /// Print the node's join token again; `--new` replaces it on every live node.
    Token {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Make a new token on the node at --node, which gives it to every live member: the
        /// old one stops working everywhere. Members that were down take it when they are back.
        #[arg(long)]
        new: bool,
        /// How long the new token admits joins, like 30m, 24h or 7d [default: 24h, or the
        /// node's --token-ttl].
        #[arg(long, requires = "new", value_parser = crate::parse::duration)]
        ttl: Option<Duration>,
        /// How many joins (nodes and logins) the new token admits [default: any number].
        #[arg(long, requires = "new")]
        uses: Option<u32>,
        /// With --new: the gRPC address of the live node whose data dir this is.
        #[arg(long, env = "STEINADLER_NODE", default_value = "127.0.0.1:7100")]
        node: String,
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
        ClusterCommand::Token {
            data_dir,
            new,
            ttl,
            uses,
            node,
        } => {
            let dir = security_dir(&data_dir);
            let material = Material::load(&dir).map_err(|e| Failure::Usage(e.into()))?;
            if material.token().is_none() {
                return Err(Failure::Usage(anyhow!(
                    "{} holds no token secret: this node cannot sign joins (offline PKI). Issue certificates with `steinadler cluster issue` instead",
                    dir.display()
                )));
            }
            if new {
                return new_token(material, &node, ttl, uses).await;
            }
            let policy = &material.token_policy;
            if let Err(refusal) = policy.check_expiry() {
                eprintln!("warning: {refusal}");
            } else {
                eprintln!("this token: {}", policy.describe());
            }
            if let Some(token) = material.token() {
                println!("{token}");
            }
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

/// `cluster token --new`: the node at `node` makes the token and gives it to every live member.
async fn new_token(
    material: Material,
    node: &str,
    ttl: Option<Duration>,
    uses: Option<u32>,
) -> Result<(), Failure> {
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err(Failure::Usage(anyhow!(
            "--ttl must be more than zero, like 24h"
        )));
    }
    if uses == Some(0) {
        return Err(Failure::Usage(anyhow!(
            "--uses must be at least 1; leave it out for a token that admits any number of joins"
        )));
    }
    let Some(ca_key_pem) = material.ca_key_pem.clone() else {
        return Err(Failure::Usage(anyhow!(
            "this data dir holds no CA key (ca.key): only a CA holder may make a join token, since \
             a token admits nodes, which receive the CA key. Run the command with the data dir of \
             a node that holds ca.key"
        )));
    };
    let client = Client::connect(node, &ClientAuth::Node(Arc::new(material)))
        .await
        .map_err(|e| {
            Failure::Runtime(anyhow!(
                "{e}. `cluster token --new` asks a live node to make the token and give it to \
                 every member: start the node, or pass the address of the node whose data dir \
                 this is with --node"
            ))
        })?;
    let made = client
        .new_token(&ca_key_pem, ttl, uses)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("the node at {node} made no new token: {e}")))?;
    eprintln!(
        "made a new join token ({}); the old one no longer works on {}: {}",
        made.policy.describe(),
        if made.nodes.len() == 1 {
            "this node"
        } else {
            "these nodes"
        },
        made.nodes.join(", ")
    );
    if !made.missed.is_empty() {
        eprintln!(
            "warning: not yet on {}. Each takes the new token within about 10 s of being \
             reachable again; until then it still admits the old one",
            made.missed.join("; ")
        );
    }
    println!("{}", made.token);
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
