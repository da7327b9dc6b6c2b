//! Proof commands (product.md section 9): `keygen`, `checkpoint`, `prove inclusion |
//! consistency | order | check`. Through `--server` the server answers (and signs with its
//! own `serve --key`); `prove check` needs no ledger at all.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use ordo::Error;
use ordo::ledger::params;
use ordo::proof::check::check;
use ordo::proof::note::{Signer, Verifier};

use super::backend::{Ask, Backend};
use super::{Cli, output};

/// Largest file `prove check` reads (an evidence bundle of a long-lived order).
const CHECK_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The key's name (no spaces or '+'), e.g. the ledger's host name.
    #[arg(long)]
    name: String,
    /// Where to write the signing key (created owner-only; never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `ordo keygen`: writes a new signing key to `--out` (mode 0600, never overwriting) and
/// prints only its verifier key.
pub fn keygen(cli: &Cli, args: &KeygenArgs, out: &mut dyn Write) -> Result<()> {
    let signer = Signer::generate(&args.name).map_err(Error::InvalidInput)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::InvalidInput(format!(
                "{} exists; keygen never overwrites a key",
                args.out.display()
            )),
            _ => Error::io(&args.out, e),
        })?;
    file.write_all(format!("{}\n", signer.to_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&args.out, e))?;
    let verifier = signer.verifier().to_text();
    match cli.format {
        output::Format::Table => writeln!(out, "{verifier}")?,
        _ => output::object(
            out,
            cli.format,
            &json!({"name": args.name, "verifier_key": verifier, "key_file": args.out}),
        )?,
    }
    Ok(())
}

/// The signer of `--key`, refused through `--server` (the server signs with its own).
fn signer(backend: &Backend, key: Option<&Path>) -> Result<Option<Signer>, Error> {
    match (backend, key) {
        (_, None) => Ok(None),
        (Backend::Remote(_), Some(_)) => Err(Error::InvalidInput(
            "--key signs locally; through --server the server signs with its own `serve --key`"
                .to_owned(),
        )),
        (Backend::Local(_), Some(path)) => ordo::server::read_signing_key(path).map(Some),
    }
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Sign the checkpoint with this key (`ordo keygen`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The tree size (default: the head).
    #[arg(long, value_name = "N")]
    tree_size: Option<u64>,
}

fn size_query(tree_size: Option<u64>) -> super::remote::Query {
    tree_size
        .map(|n| vec![("tree_size", n.to_string())])
        .unwrap_or_default()
}

pub fn checkpoint(cli: &Cli, args: &CheckpointArgs, out: &mut dyn Write) -> Result<()> {
    let backend = Backend::of(cli)?;
    let signer = signer(&backend, args.key.as_deref())?;
    let answer = backend.answer(Ask::Checkpoint(
        args.tree_size,
        signer,
        size_query(args.tree_size),
    ))?;
    match cli.format {
        // For people: the note itself, as a tlog tool prints it.
        output::Format::Table => write!(out, "{}", answer["note"].as_str().unwrap_or(""))?,
        _ => output::object(out, cli.format, &answer)?,
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum Prove {
    /// The inclusion proof of the event at a position.
    Inclusion {
        /// The event's position.
        #[arg(long, value_name = "P")]
        position: u64,
        /// The tree size (default: the head).
        #[arg(long, value_name = "N")]
        tree_size: Option<u64>,
    },
    /// The consistency proof between two tree sizes.
    Consistency {
        /// The earlier tree size.
        #[arg(long, value_name = "M")]
        old_size: u64,
        /// The later tree size (default: the head).
        #[arg(long, value_name = "N")]
        tree_size: Option<u64>,
    },
    /// An evidence bundle for one order: its events, their inclusion proofs and the
    /// checkpoint.
    Order {
        /// The order id.
        order: String,
        /// The tree size (default: the head).
        #[arg(long, value_name = "N")]
        tree_size: Option<u64>,
        /// Sign the checkpoint with this key.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Check a proof, checkpoint or bundle offline (no ledger needed).
    Check {
        /// The file (`-`: standard input).
        file: PathBuf,
        /// Check the signature against this verifier key (NAME+HASH+KEYDATA, or @FILE).
        #[arg(long, value_name = "KEY")]
        verifier_key: Option<String>,
    },
}

pub fn prove(cli: &Cli, prove: &Prove, out: &mut dyn Write) -> Result<()> {
    let answer = match prove {
        Prove::Check { file, verifier_key } => {
            let verifier = verifier_key.as_deref().map(verifier).transpose()?;
            let text = read_limited(file)?;
            serde_json::to_value(check(&text, verifier.as_ref())?)?
        }
        Prove::Inclusion {
            position,
            tree_size,
        } => {
            let mut query = vec![("position", position.to_string())];
            query.extend(size_query(*tree_size));
            Backend::of(cli)?.answer(Ask::Inclusion(*position, *tree_size, query))?
        }
        Prove::Consistency {
            old_size,
            tree_size,
        } => {
            let mut query = vec![("old_size", old_size.to_string())];
            query.extend(size_query(*tree_size));
            Backend::of(cli)?.answer(Ask::Consistency(*old_size, *tree_size, query))?
        }
        Prove::Order {
            order,
            tree_size,
            key,
        } => {
            let order = params::order_id(order)?;
            let backend = Backend::of(cli)?;
            let signer = signer(&backend, key.as_deref())?;
            backend.answer(Ask::Evidence(
                order,
                *tree_size,
                signer,
                size_query(*tree_size),
            ))?
        }
    };
    output::object(out, cli.format, &answer)
}

/// A verifier key given as text, or `@FILE` holding it.
fn verifier(key: &str) -> Result<Verifier, Error> {
    let text = match key.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => key.to_owned(),
    };
    Verifier::parse(text.trim()).map_err(Error::InvalidInput)
}

/// The file's text (`-`: standard input), at most `CHECK_FILE_BYTES_MAX` bytes.
fn read_limited(path: &Path) -> Result<String, Error> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .take(CHECK_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(CHECK_FILE_BYTES_MAX + 1).read_to_string(&mut text))
    };
    read.map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > CHECK_FILE_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "{} is larger than {CHECK_FILE_BYTES_MAX} bytes",
            path.display()
        )));
    }
    Ok(text)
}
