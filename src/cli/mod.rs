//! The `facelock` command line: one file per command, each with its arguments and its `run`.
//! Commands that touch only users' records open the store through
//! [`facelock::service::Accounts`] and never load the face engine.

mod audit;
mod bench;
mod clients;
mod describe;
mod eval;
mod fetch_models;
mod import;
mod keys;
mod reindex;
mod serve;
mod users;

use clap::{Parser, Subcommand};
use facelock::config::Settings;

/// Any failure of a command; printed with its causes.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "facelock", version, about = "Face authentication server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(serve::Args),
    /// Manage users directly in the data folder.
    #[command(subcommand)]
    Users(users::Command),
    /// Manage the OpenID Connect clients: the applications that may send users here to sign in.
    #[command(subcommand)]
    Clients(clients::Command),
    /// Manage the token signing keys (ES256) in the store.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Fetch the local engine's models into FACELOCK_MODELS_DIR (normally done on first start).
    FetchModels,
    /// Enrol the users of the original server's reference_faces folder into the current
    /// engine: `<user_id>/<photo>` or `<user_id>.<ext>`. Prints a tab-separated line per photo
    /// (imported, refused with the reason, or skipped); exits 1 when a photo was refused.
    Import(import::Args),
    /// Describe stored faces again from their reference photos after the engine's model
    /// changed (faces of another model are left out of logins until then). Prints a
    /// tab-separated line per face (redescribed, refused with the reason, or gone); exits 1
    /// when a face was refused. Safe while servers run.
    Reindex(reindex::Args),
    /// Show the audit trail, newest first, one JSON object per line.
    Audit(audit::Args),
    /// Accuracy of the local engine on labelled pairs: error rates per threshold, EER, defaults.
    Eval(eval::Args),
    /// What the local engine sees in photos, one JSON object per photo: its faces (box, score),
    /// how far it was turned, the largest face's quality and whether it could be enrolled, and
    /// its descriptor. Exits 1 when a photo could not be read.
    Describe(describe::Args),
    /// Speed and memory of the local engine on real photos.
    Bench(bench::Args),
}

impl Command {
    pub async fn run(self, settings: Settings) -> CliResult {
        match self {
            Command::Serve(args) => serve::run(settings, args).await,
            Command::Users(cmd) => users::run(&settings, cmd).await,
            Command::Keys(cmd) => keys::run(&settings, cmd).await,
            Command::Clients(cmd) => clients::run(&settings, cmd).await,
            Command::FetchModels => fetch_models::run(&settings),
            Command::Import(args) => import::run(&settings, args).await,
            Command::Reindex(args) => reindex::run(&settings, args).await,
            Command::Audit(args) => audit::run(&settings, args).await,
            Command::Eval(args) => eval::run(&settings, args),
            Command::Describe(args) => describe::run(&settings, args),
            Command::Bench(args) => bench::run(&settings, args).await,
        }
    }
}

/// The local engine's models, fetched first if they are missing.
fn local_models(
    settings: &Settings,
) -> Result<facelock_engine::Models, Box<dyn std::error::Error>> {
    let (dir, model) = (&settings.engine.models_dir, settings.engine.face_model);
    facelock_engine::models::ensure(dir, model)?;
    Ok(facelock_engine::Models::load(dir, model)?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `facelock <command> --help` explains every command, flag and argument.
    #[test]
    fn every_command_flag_and_argument_has_help() {
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "{path} has no help");
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help");
            }
            for sub in command.get_subcommands() {
                check(sub, &path);
            }
        }
        Cli::command().debug_assert();
        check(&Cli::command(), "");
    }
}
