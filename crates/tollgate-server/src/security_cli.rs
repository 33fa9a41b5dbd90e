//! `tollgate security export` and `tollgate security import`: copy a security model (roles,
//! profiles and users) from one running server to another, through the public API only
//! (`POST /_query`).
//!
//! Export reads every role (`security:searchRoles`), every profile (`security:searchProfiles`) and
//! every user (`security:searchUsers`), page after page, and prints
//! `{"roles":{id: source},"profiles":{id: source},"users":{kuid: source}}` with the ids sorted and
//! `_kuzzle_info` removed, so that two exports of the same model are byte-identical. Credentials are
//! never exported: no action returns them.
//!
//! Import sends every role, then every profile, with `createOrReplaceRole` /
//! `createOrReplaceProfile` and `dryRun: true` first: the server validates the change and answers
//! the document it would write, which is compared with its current copy. An unchanged document is
//! not written; a changed one is written (unless `--dry-run`). Then every user: a missing one is
//! created with `createUser` (without credentials), a different one is updated with `updateUser`.
//! Those two actions have no `dryRun`: what they would store is computed here, and a dry run checks
//! only that the user's profiles exist. `updateUser` merges and cannot remove a key, so a user whose
//! stored copy has keys the file lacks cannot be made equal to the file; the summary says so
//! (`docs/operations.md` §1.4).
//!
//! Only stdout carries the export or the import summary; messages go to stderr. The token and the
//! password are never printed.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

/// A change was refused by the server, or the server answered an error.
pub const EX_REFUSED: u8 = 1;
/// Bad arguments (a URL that cannot be used).
pub const EX_USAGE: u8 = 64;
/// The import file is not a security model.
pub const EX_DATAERR: u8 = 65;
/// The import file cannot be read.
pub const EX_NOINPUT: u8 = 66;
/// The server cannot be reached, or does not answer like a Kuzzle server.
pub const EX_UNAVAILABLE: u8 = 69;
/// Writing the output failed.
pub const EX_IOERR: u8 = 74;
/// Authentication failed, or the caller may not read the security model.
pub const EX_NOPERM: u8 = 77;

/// Time allowed to each request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Documents asked for per search page (halved while the server's `documents_fetch_count` refuses it).
const PAGE_SIZE: u64 = 500;

/// The subcommands of the `tollgate` binary. Without one, the binary runs the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copy a security model (roles, profiles, users) out of a running server, or into one.
    #[command(subcommand)]
    Security(SecurityCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecurityCommand {
    /// Print every role, profile and user of a running server as one JSON document.
    Export(ExportArgs),
    /// Create or replace roles, then profiles, then users, from an exported document; print what
    /// changed.
    Import(ImportArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Leave users out: export roles and profiles only (no `users` key).
    #[arg(long)]
    pub no_users: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The document to import (as printed by `tollgate security export`); `-` or none: stdin.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Validate every change on the server (`dryRun`) and print the summary; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Pass `force`: accept roles naming controllers the server does not know, and profiles
    /// restricted to indexes or collections that do not exist there.
    #[arg(long)]
    pub force: bool,
    /// Pass `allowLockout`: make a change even if it leaves nobody able to administer the rights
    /// (`security.rights.lockout`).
    #[arg(long)]
    pub allow_lockout: bool,
    /// Leave users out: ignore the file's `users`, read and write no user.
    #[arg(long)]
    pub no_users: bool,
}

/// Where the server is and who calls it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The server's HTTP address (plain HTTP), e.g. `http://127.0.0.1:7512`.
    #[arg(
        long,
        env = "TOLLGATE_URL",
        value_name = "URL",
        default_value = "http://localhost:7512"
    )]
    pub url: String,
    /// An authentication token (`auth:login`). Prefer the environment variable: other users of the
    /// machine can see a process's arguments.
    #[arg(long, env = "TOLLGATE_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Log in with the `local` strategy as this user. Not together with a token.
    #[arg(long, env = "TOLLGATE_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// The password of `--username`. Prefer the environment variable.
    #[arg(
        long,
        env = "TOLLGATE_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<Secret>,
}

/// A token or a password. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Why a command stopped: its exit code and its message (printed after `tollgate: `).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A Kuzzle error answered by the server.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub id: String,
    pub status: u64,
    pub message: String,
    pub props: Vec<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.id, self.status, self.message)
    }
}

/// A call that did not succeed: the server's error, or no usable answer at all.
#[derive(Debug)]
enum CallError {
    Api(ApiError),
    Transport(String),
}

impl CallError {
    /// The failure of a read the command cannot do without (login, searches).
    fn fatal(self, what: &str) -> Failure {
        match self {
            Self::Api(e) if e.status == 401 || e.status == 403 => {
                Failure::new(EX_NOPERM, format!("{what}: {e}"))
            }
            Self::Api(e) => Failure::new(EX_REFUSED, format!("{what}: {e}")),
            Self::Transport(e) => Failure::new(EX_UNAVAILABLE, format!("{what}: {e}")),
        }
    }
}

/// Runs a subcommand; the exit code of the binary.
pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("tollgate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match command {
            Command::Security(SecurityCommand::Export(args)) => export(args).await,
            Command::Security(SecurityCommand::Import(args)) => import(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tollgate: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Export

async fn export(args: ExportArgs) -> Result<(), Failure> {
    let mut session = Session::open(&args.connection).await?;
    let current = read_model(&mut session.client).await?;
    let mut document = json!({
        "roles": sources(&current.roles),
        "profiles": sources(&current.profiles),
    });
    if !args.no_users {
        document["users"] = sources(&search_all(&mut session.client, "searchUsers").await?);
    }
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot serialize the export: {e}")))?;
    text.push('\n');
    write_stdout(&text)
}

/// `{id: source}` in id order.
fn sources(docs: &BTreeMap<String, Stored>) -> Value {
    Value::Object(
        docs.iter()
            .map(|(id, d)| (id.clone(), Value::Object(d.source.clone())))
            .collect(),
    )
}

fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot write to stdout: {e}")))
}

/// A role, profile or user as stored: its `_source` without `_kuzzle_info`.
#[derive(Debug, Clone)]
struct Stored {
    source: Map<String, Value>,
}

/// The server's roles and profiles, by id.
struct CurrentModel {
    roles: BTreeMap<String, Stored>,
    profiles: BTreeMap<String, Stored>,
}

async fn read_model(client: &mut Client) -> Result<CurrentModel, Failure> {
    Ok(CurrentModel {
        roles: search_all(client, "searchRoles").await?,
        profiles: search_all(client, "searchProfiles").await?,
    })
}

/// Every document a security search returns, page after page (`from`/`size`).
async fn search_all(
    client: &mut Client,
    action: &str,
) -> Result<BTreeMap<String, Stored>, Failure> {
    let mut docs = BTreeMap::new();
    let mut from: u64 = 0;
    let mut size = PAGE_SIZE;
    loop {
        let answer = client
            .call(json!({"controller": "security", "action": action, "from": from, "size": size}))
            .await;
        let result = match answer {
            Ok(result) => result,
            // The server's `documents_fetch_count` is below the page size: smaller pages.
            Err(CallError::Api(e)) if e.id == "services.storage.get_limit_exceeded" && size > 1 => {
                size /= 2;
                continue;
            }
            // Past the server's result window (`from + size` at most 10000 for users).
            Err(CallError::Api(e))
                if e.id == "api.assert.invalid_argument"
                    && e.props.first().and_then(Value::as_str) == Some("from") =>
            {
                return Err(Failure::new(
                    EX_REFUSED,
                    format!(
                        "security:{action}: {e} [more documents than the server serves page by \
                         page (from + size at most 10000 by default): none exported, after {from}; \
                         see docs/operations.md §1.2]"
                    ),
                ));
            }
            Err(e) => return Err(e.fatal(&format!("security:{action}"))),
        };
        let hits = result["hits"].as_array().ok_or_else(|| {
            Failure::new(
                EX_UNAVAILABLE,
                format!("security:{action}: the answer has no hits"),
            )
        })?;
        let total = result["total"].as_u64().unwrap_or(0);
        for hit in hits {
            let (Some(id), Some(source)) = (hit["_id"].as_str(), hit["_source"].as_object()) else {
                return Err(Failure::new(
                    EX_UNAVAILABLE,
                    format!("security:{action}: a hit without _id or _source"),
                ));
            };
            let mut source = source.clone();
            source.remove("_kuzzle_info");
            docs.insert(id.to_owned(), Stored { source });
        }
        from += hits.len() as u64;
        if hits.is_empty() || from >= total {
            return Ok(docs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Import

/// Roles, profiles or users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Role,
    Profile,
    User,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Profile => "profile",
            Self::User => "user",
        }
    }
}

/// What the import did (or, in a dry run, would do) with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Created,
    Replaced,
    Unchanged,
    Refused,
    /// Not tried: the import stopped at an earlier refusal.
    Skipped,
}

impl Status {
    fn label(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replaced => "replaced",
            Self::Unchanged => "unchanged",
            Self::Refused => "refused",
            Self::Skipped => "skipped",
        }
    }
}

struct Outcome {
    kind: Kind,
    id: String,
    status: Status,
    /// A remark shown after the status.
    note: Option<String>,
    /// A user that is not, after the import, exactly as in the file (`updateUser` cannot remove or
    /// reorder keys).
    inexact: bool,
}

impl Outcome {
    fn new(kind: Kind, id: &str, status: Status, note: Option<String>) -> Self {
        Self {
            kind,
            id: id.to_owned(),
            status,
            note,
            inexact: false,
        }
    }
}

/// The document to import, in file order.
#[derive(Debug)]
struct Model {
    roles: Vec<(String, Map<String, Value>)>,
    profiles: Vec<(String, Map<String, Value>)>,
    /// `None`: the file has no `users` key (users are then neither read nor written).
    users: Option<Vec<(String, Map<String, Value>)>>,
}

/// Parses an export: an object with `roles`, `profiles` and/or `users`, each `{id: object}`; a
/// user must have `profileIds`, a non-empty array of strings.
fn parse_model(text: &str) -> Result<Model, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("the document is not a JSON object".into());
    };
    let mut model = Model {
        roles: Vec::new(),
        profiles: Vec::new(),
        users: None,
    };
    for (key, value) in top {
        let target = match key.as_str() {
            "roles" => &mut model.roles,
            "profiles" => &mut model.profiles,
            "users" => model.users.get_or_insert_with(Vec::new),
            other => {
                return Err(format!(
                    "unexpected key {other:?}: expected \"roles\", \"profiles\" and \"users\""
                ));
            }
        };
        let Value::Object(docs) = value else {
            return Err(format!("\"{key}\" is not an object of {{id: definition}}"));
        };
        for (id, source) in docs {
            if id.is_empty() {
                return Err(format!("\"{key}\" has an empty id"));
            }
            let Value::Object(source) = source else {
                return Err(format!("{key}.{id} is not an object"));
            };
            if key == "users" {
                check_user(&id, &source)?;
            }
            target.push((id, source));
        }
    }
    Ok(model)
}

/// What `createUser` needs of a user of the file, checked before anything is sent.
fn check_user(id: &str, source: &Map<String, Value>) -> Result<(), String> {
    if id == "-1" {
        return Err("users.\"-1\" is the anonymous user, which cannot be imported".into());
    }
    match source.get("profileIds") {
        Some(Value::Array(ids)) if !ids.is_empty() && ids.iter().all(Value::is_string) => Ok(()),
        _ => Err(format!(
            "users.{} has no profileIds (a non-empty array of profile ids)",
            shown(id)
        )),
    }
}

fn read_input(file: Option<&PathBuf>) -> Result<String, Failure> {
    let mut text = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            text = std::fs::read_to_string(path).map_err(|e| {
                Failure::new(EX_NOINPUT, format!("cannot read {}: {e}", path.display()))
            })?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::new(EX_NOINPUT, format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(text)
}

async fn import(args: ImportArgs) -> Result<(), Failure> {
    endpoint(&args.connection)?;
    let text = read_input(args.file.as_ref())?;
    let model = parse_model(&text).map_err(|e| {
        Failure::new(
            EX_DATAERR,
            format!("the input is not a security export: {e}"),
        )
    })?;
    let mut model = model;
    if args.no_users {
        model.users = None;
    }
    let mut session = Session::open(&args.connection).await?;
    let outcomes = apply(&mut session.client, &model, &args).await?;
    let mut summary = String::new();
    if args.dry_run {
        summary.push_str("dry run: nothing was written\n");
        if model.users.is_some() {
            summary.push_str(
                "dry run: users are not validated by the server, only their profiles are checked\n",
            );
        }
    }
    for o in &outcomes {
        summary.push_str(&format!(
            "{} {}: {}{}\n",
            o.kind.name(),
            shown(&o.id),
            o.status.label(),
            o.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
    }
    let mut kinds = vec![Kind::Role, Kind::Profile];
    if model.users.is_some() {
        kinds.push(Kind::User);
    }
    for kind in kinds {
        summary.push_str(&totals(kind, &outcomes));
        summary.push('\n');
    }
    write_stdout(&summary)?;
    let refused = outcomes
        .iter()
        .filter(|o| o.status == Status::Refused)
        .count();
    if refused > 0 {
        let mut message = format!("{refused} change(s) refused by the server");
        if args.dry_run {
            message.push_str(" in the dry run");
        } else if outcomes.iter().any(|o| o.status == Status::Skipped) {
            message.push_str("; the import stopped there (the documents after it are skipped)");
        }
        return Err(Failure::new(EX_REFUSED, message));
    }
    Ok(())
}

/// `roles: 1 created, 0 replaced, 3 unchanged` (and refused, skipped when there are some).
fn totals(kind: Kind, outcomes: &[Outcome]) -> String {
    let count = |s: Status| {
        outcomes
            .iter()
            .filter(|o| o.kind == kind && o.status == s)
            .count()
    };
    let mut line = format!(
        "{}s: {} created, {} replaced, {} unchanged",
        kind.name(),
        count(Status::Created),
        count(Status::Replaced),
        count(Status::Unchanged)
    );
    for s in [Status::Refused, Status::Skipped] {
        let n = count(s.clone());
        if n > 0 {
            line.push_str(&format!(", {n} {}", s.label()));
        }
    }
    let inexact = outcomes
        .iter()
        .filter(|o| o.kind == kind && o.inexact)
        .count();
    if inexact > 0 {
        line.push_str(&format!(", {inexact} not exactly as in the file"));
    }
    line
}

/// An id as printed: as is when it is plain, JSON-quoted otherwise.
fn shown(id: &str) -> String {
    let plain = id
        .chars()
        .all(|c| c.is_alphanumeric() || "-_.@+".contains(c));
    if plain {
        id.to_owned()
    } else {
        Value::String(id.to_owned()).to_string()
    }
}

/// The canonical text of a definition: its compact JSON, key order included (the server keeps the
/// key order it was sent, and an export reproduces it).
fn canonical(source: &Map<String, Value>) -> String {
    Value::Object(source.clone()).to_string()
}

async fn apply(
    client: &mut Client,
    model: &Model,
    args: &ImportArgs,
) -> Result<Vec<Outcome>, Failure> {
    let current = read_model(client).await?;
    let mut outcomes = Vec::new();
    let mut stopped = false;
    // Roles this import creates: in a dry run, a profile naming one cannot be validated yet.
    let mut new_roles: HashSet<&str> = HashSet::new();
    let items = model
        .roles
        .iter()
        .map(|(id, s)| (Kind::Role, id, s))
        .chain(model.profiles.iter().map(|(id, s)| (Kind::Profile, id, s)));
    for (kind, id, source) in items {
        if stopped {
            outcomes.push(Outcome::new(kind, id, Status::Skipped, None));
            continue;
        }
        let existing = match kind {
            Kind::Role => current.roles.get(id),
            Kind::Profile => current.profiles.get(id),
            // Not in this loop (`apply_users`).
            Kind::User => None,
        };
        let dry = client
            .call(write_request(kind, id, source, args, true))
            .await;
        let (mut status, note) = match dry {
            Ok(result) => {
                let mut would_be = result["_source"].as_object().cloned().unwrap_or_default();
                would_be.remove("_kuzzle_info");
                (compare(existing, &would_be), None)
            }
            Err(CallError::Api(e))
                if args.dry_run
                    && kind == Kind::Profile
                    && e.id == "security.role.not_found"
                    && e.props
                        .first()
                        .and_then(Value::as_str)
                        .is_some_and(|r| new_roles.contains(r)) =>
            {
                let role = e.props.first().and_then(Value::as_str).unwrap_or_default();
                (
                    compare(existing, source),
                    Some(format!(
                        "not validated: it names role {}, which this import creates",
                        shown(role)
                    )),
                )
            }
            Err(CallError::Api(e)) => {
                report_refusal(kind, id, &e);
                stopped = !args.dry_run;
                (Status::Refused, None)
            }
            Err(CallError::Transport(e)) => {
                return Err(Failure::new(
                    EX_UNAVAILABLE,
                    format!("{} {}: {e}", kind.name(), shown(id)),
                ));
            }
        };
        if !args.dry_run && matches!(status, Status::Created | Status::Replaced) {
            match client
                .call(write_request(kind, id, source, args, false))
                .await
            {
                Ok(_) => {}
                Err(CallError::Api(e)) => {
                    report_refusal(kind, id, &e);
                    stopped = true;
                    status = Status::Refused;
                }
                Err(CallError::Transport(e)) => {
                    return Err(Failure::new(
                        EX_UNAVAILABLE,
                        format!(
                            "{} {}: {e} (the change may or may not have been written)",
                            kind.name(),
                            shown(id)
                        ),
                    ));
                }
            }
        }
        if kind == Kind::Role && status == Status::Created {
            new_roles.insert(id);
        }
        outcomes.push(Outcome::new(kind, id, status, note));
    }
    if let Some(users) = &model.users {
        apply_users(client, model, users, &current, args, stopped, &mut outcomes).await?;
    }
    Ok(outcomes)
}

fn compare(existing: Option<&Stored>, would_be: &Map<String, Value>) -> Status {
    match existing {
        None => Status::Created,
        Some(stored) if canonical(&stored.source) == canonical(would_be) => Status::Unchanged,
        Some(_) => Status::Replaced,
    }
}

/// The `dryRun`/real write of a role or profile (users: [`apply_users`]).
fn write_request(
    kind: Kind,
    id: &str,
    source: &Map<String, Value>,
    args: &ImportArgs,
    dry_run: bool,
) -> Value {
    let action = match kind {
        Kind::Role => "createOrReplaceRole",
        Kind::Profile => "createOrReplaceProfile",
        Kind::User => "createUser",
    };
    json!({
        "controller": "security",
        "action": action,
        "_id": id,
        "body": source,
        "force": args.force,
        "allowLockout": args.allow_lockout,
        "dryRun": dry_run,
        "refresh": "wait_for",
    })
}

/// The keys `createUser` and `updateUser` ignore in a user's content.
const USER_RESERVED: [&str; 3] = ["_id", "_version", "_kuzzle_info"];

/// A user of the file as `createUser` stores it: `profileIds` first, then the other keys in file
/// order, without the reserved ones.
fn user_as_created(source: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "profileIds".into(),
        source.get("profileIds").cloned().unwrap_or(Value::Null),
    );
    for (k, v) in source {
        if k != "profileIds" && !USER_RESERVED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// A stored user as `updateUser` with the file's content as body leaves it (`docs/api/users.md`
/// §6): each key of the file replaces the stored value in place, a new key is appended, no key is
/// removed.
fn user_as_updated(stored: &Map<String, Value>, source: &Map<String, Value>) -> Map<String, Value> {
    let mut out = stored.clone();
    for (k, v) in source {
        if !USER_RESERVED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Why a user as stored is not the user of the file (`None`: it is).
fn inexact_user(stored: &Map<String, Value>, wanted: &Map<String, Value>) -> Option<String> {
    if canonical(stored) == canonical(wanted) {
        return None;
    }
    let extra: Vec<String> = stored
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(|k| Value::String(k.clone()).to_string())
        .collect();
    Some(if extra.is_empty() {
        "not exactly as in the file: its keys are in another order, which updateUser cannot change"
            .to_owned()
    } else {
        format!(
            "not exactly as in the file: updateUser cannot remove its key(s) {}",
            extra.join(", ")
        )
    })
}

/// Users, after the roles and profiles: `createUser` (no credentials) for a missing one,
/// `updateUser` for a different one; neither has `dryRun`, so what they would store is computed
/// here, and a dry run checks only that the profiles exist (on the server or in the file).
async fn apply_users(
    client: &mut Client,
    model: &Model,
    users: &[(String, Map<String, Value>)],
    current: &CurrentModel,
    args: &ImportArgs,
    mut stopped: bool,
    outcomes: &mut Vec<Outcome>,
) -> Result<(), Failure> {
    let stored_users = if stopped || users.is_empty() {
        BTreeMap::new()
    } else {
        search_all(client, "searchUsers").await?
    };
    // The profiles a user may name once the roles and profiles of the file are applied.
    let refused: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.kind == Kind::Profile && o.status == Status::Refused)
        .map(|o| o.id.as_str())
        .collect();
    let profiles: HashSet<&str> = current
        .profiles
        .keys()
        .map(String::as_str)
        .chain(
            model
                .profiles
                .iter()
                .map(|(id, _)| id.as_str())
                .filter(|id| !refused.contains(id)),
        )
        .collect();
    for (id, source) in users {
        if stopped {
            outcomes.push(Outcome::new(Kind::User, id, Status::Skipped, None));
            continue;
        }
        let wanted = user_as_created(source);
        let existing = stored_users.get(id);
        let would_be = match existing {
            None => wanted.clone(),
            Some(stored) => user_as_updated(&stored.source, &wanted),
        };
        let mut status = compare(existing, &would_be);
        let mut written = None;
        if args.dry_run {
            let missing = wanted["profileIds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|p| !profiles.contains(p));
            if let (Some(p), true) = (missing, status != Status::Unchanged) {
                eprintln!(
                    "tollgate: user {} refused: profile {} does not exist on the server and is \
                     not created by this import (security.profile.not_found, checked by tollgate)",
                    shown(id),
                    shown(p)
                );
                status = Status::Refused;
            }
        } else if status != Status::Unchanged {
            let request = if existing.is_none() {
                json!({
                    "controller": "security",
                    "action": "createUser",
                    "_id": id,
                    "body": {"content": source},
                    "refresh": "wait_for",
                })
            } else {
                json!({
                    "controller": "security",
                    "action": "updateUser",
                    "_id": id,
                    "body": source,
                    "allowLockout": args.allow_lockout,
                    "refresh": "wait_for",
                })
            };
            match client.call(request).await {
                Ok(result) => {
                    let mut answered = result["_source"].as_object().cloned().unwrap_or_default();
                    answered.remove("_kuzzle_info");
                    written = Some(answered);
                }
                Err(CallError::Api(e)) => {
                    report_refusal(Kind::User, id, &e);
                    stopped = true;
                    status = Status::Refused;
                }
                Err(CallError::Transport(e)) => {
                    return Err(Failure::new(
                        EX_UNAVAILABLE,
                        format!(
                            "user {}: {e} (the change may or may not have been written)",
                            shown(id)
                        ),
                    ));
                }
            }
        }
        let mut outcome = Outcome::new(Kind::User, id, status.clone(), None);
        if status != Status::Refused {
            // What the server answered, or, without a write, what it stores or would store.
            outcome.note = inexact_user(written.as_ref().unwrap_or(&would_be), &wanted);
            outcome.inexact = outcome.note.is_some();
        }
        outcomes.push(outcome);
    }
    Ok(())
}

fn report_refusal(kind: Kind, id: &str, e: &ApiError) {
    let hint = match e.id.as_str() {
        "security.rights.lockout" => " [--allow-lockout makes the change anyway]",
        "security.role.unknown_controller"
        | "services.storage.unknown_index"
        | "services.storage.unknown_collection" => " [--force accepts it]",
        _ => "",
    };
    eprintln!("tollgate: {} {} refused: {e}{hint}", kind.name(), shown(id));
}

// ---------------------------------------------------------------------------------------------
// Talking to the server

/// A client, authenticated as asked.
///
/// The token of a `--username` login is not revoked when the command ends: the server issues the
/// same token to the same user for logins in the same second (as Kuzzle does), so `auth:logout`
/// could revoke another client's token. It expires after the server's default lifetime.
struct Session {
    client: Client,
}

/// The server's address, checked with the choice of credentials before anything is read or sent.
fn endpoint(args: &ConnectionArgs) -> Result<Endpoint, Failure> {
    let endpoint = Endpoint::parse(&args.url).map_err(|e| Failure::new(EX_USAGE, e))?;
    if args.token.is_some() && args.username.is_some() {
        return Err(Failure::new(
            EX_USAGE,
            "give either a token (--token or TOLLGATE_TOKEN) or a username and password, not both",
        ));
    }
    Ok(endpoint)
}

impl Session {
    async fn open(args: &ConnectionArgs) -> Result<Self, Failure> {
        let endpoint = endpoint(args)?;
        let mut client = Client {
            endpoint,
            token: args.token.clone(),
            sender: None,
        };
        if let (Some(username), Some(password)) = (&args.username, &args.password) {
            let answer = client
                .call(json!({
                    "controller": "auth",
                    "action": "login",
                    "strategy": "local",
                    "body": {"username": username, "password": password.0},
                }))
                .await
                .map_err(|e| e.fatal("auth:login"))?;
            let jwt = answer["jwt"].as_str().ok_or_else(|| {
                Failure::new(EX_UNAVAILABLE, "auth:login: the answer has no token")
            })?;
            client.token = Some(Secret(jwt.to_owned()));
        }
        Ok(Self { client })
    }
}

/// `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    /// The `Host` header: the authority as written.
    authority: String,
    /// Prepended to `/_query`, without a trailing `/`.
    prefix: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, String> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(
                "--url: https is not supported: give the server's plain-HTTP address \
                 (e.g. on localhost or through an SSH tunnel)"
                    .into(),
            );
        } else {
            return Err(format!(
                "--url must start with http://, e.g. http://127.0.0.1:7512 (got {url:?})"
            ));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            // Not echoed: it may hold a password.
            return Err(
                "--url: credentials in the URL are not supported; use --username and \
                        --password (or --token)"
                    .into(),
            );
        }
        if path.contains(['?', '#']) {
            return Err("--url: a query string or fragment is not supported".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("--url: bad host in {url:?}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("--url: no host in {url:?}"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("--url: bad port in {url:?}"))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// One HTTP/1.1 connection to `POST /_query`, opened again when the server closed it.
struct Client {
    endpoint: Endpoint,
    token: Option<Secret>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// Sends one request envelope; its `result`, or its `error`.
    async fn call(&mut self, payload: Value) -> Result<Value, CallError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(payload)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sender = None;
                Err(CallError::Transport(format!(
                    "no answer from {}:{} within {} s",
                    self.endpoint.host,
                    self.endpoint.port,
                    REQUEST_TIMEOUT.as_secs()
                )))
            }
        }
    }

    async fn exchange(&mut self, payload: Value) -> Result<Value, CallError> {
        let mut request = hyper::Request::post(format!("{}/_query", self.endpoint.prefix))
            .header(hyper::header::HOST, &self.endpoint.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.0));
        }
        let request = request
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| CallError::Transport(format!("cannot build the request: {e}")))?;
        let sender = self.connected().await?;
        let answer = sender.send_request(request).await;
        let response = match answer {
            Ok(response) => response,
            Err(e) => {
                self.sender = None;
                return Err(CallError::Transport(format!(
                    "the request to {}:{} failed: {e}",
                    self.endpoint.host, self.endpoint.port
                )));
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(CallError::Transport(format!("reading the answer: {e}")));
            }
        };
        let envelope: Value = serde_json::from_slice(&body).map_err(|_| {
            CallError::Transport(format!(
                "the server did not answer a Kuzzle envelope (HTTP {status}); is --url the \
                 address of a Tollgate or Kuzzle server?"
            ))
        })?;
        match envelope.get("error") {
            Some(error) if !error.is_null() => Err(CallError::Api(ApiError {
                id: error["id"].as_str().unwrap_or("unknown").to_owned(),
                status: error["status"]
                    .as_u64()
                    .unwrap_or(u64::from(status.as_u16())),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
                props: error["props"].as_array().cloned().unwrap_or_default(),
            })),
            Some(_) => Ok(envelope.get("result").cloned().unwrap_or(Value::Null)),
            None => Err(CallError::Transport(format!(
                "the server did not answer a Kuzzle envelope (HTTP {status})"
            ))),
        }
    }

    /// The open connection, or a new one.
    async fn connected(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, CallError> {
        let usable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let address = (self.endpoint.host.as_str(), self.endpoint.port);
            let stream = tokio::net::TcpStream::connect(address).await.map_err(|e| {
                CallError::Transport(format!(
                    "cannot connect to {}:{}: {e}",
                    self.endpoint.host, self.endpoint.port
                ))
            })?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| CallError::Transport(format!("HTTP handshake: {e}")))?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| CallError::Transport("no connection".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:7512").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("127.0.0.1", 7512, "")
        );
        let e = Endpoint::parse("http://[::1]:8000/kuzzle/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("::1", 8000, "/kuzzle")
        );
        assert_eq!(e.authority, "[::1]:8000");
        let e = Endpoint::parse("http://gateway").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.port, 80);
        for bad in [
            "https://x:1",
            "x:7512",
            "http://:1",
            "http://x:0",
            "http://x:99999",
            "http://x:1/?a",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let secret = Endpoint::parse("http://admin:s3cret@x:1")
            .err()
            .unwrap_or_default();
        assert!(!secret.contains("s3cret"), "{secret}");
    }

    #[test]
    fn model_files() {
        let m =
            parse_model(r#"{"roles":{"r":{"controllers":{}}},"profiles":{"b":{"x":1},"a":{}}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.roles.len(), 1);
        let ids: Vec<&str> = m.profiles.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "file order is kept");
        assert!(parse_model(r#"{"roles":{}}"#).is_ok_and(|m| m.users.is_none()));
        let m = parse_model(r#"{"users":{"u":{"profileIds":["a","b"],"x":1}}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.users.map(|u| u.len()), Some(1));
        for bad in [
            "[]",
            "{",
            r#"{"users":[]}"#,
            r#"{"users":{"u":{}}}"#,
            r#"{"users":{"u":{"profileIds":[]}}}"#,
            r#"{"users":{"u":{"profileIds":"admin"}}}"#,
            r#"{"users":{"u":{"profileIds":[1]}}}"#,
            r#"{"users":{"-1":{"profileIds":["anonymous"]}}}"#,
            r#"{"role":{}}"#,
            r#"{"roles":[]}"#,
            r#"{"roles":{"r":1}}"#,
            r#"{"roles":{"":{}}}"#,
        ] {
            assert!(parse_model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s: Secret = "kauth-abc"
            .parse()
            .unwrap_or_else(|e: std::convert::Infallible| panic!("{e}"));
        assert!(!format!("{s:?}").contains("abc"));
    }

    #[test]
    fn unchanged_means_same_keys_in_the_same_order() {
        let a = json!({"controllers":{"x":{"actions":{"a":true,"b":true}}}});
        let b = json!({"controllers":{"x":{"actions":{"b":true,"a":true}}}});
        let stored = Stored {
            source: a.as_object().cloned().unwrap_or_default(),
        };
        let same = a.as_object().cloned().unwrap_or_default();
        let reordered = b.as_object().cloned().unwrap_or_default();
        assert_eq!(compare(Some(&stored), &same), Status::Unchanged);
        assert_eq!(compare(Some(&stored), &reordered), Status::Replaced);
        assert_eq!(compare(None, &same), Status::Created);
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn users_are_merged_as_update_user_does() {
        let file = obj(json!({"name":"B","profileIds":["p"],"_kuzzle_info":{},"age":3}));
        let wanted = user_as_created(&file);
        assert_eq!(
            Value::Object(wanted.clone()).to_string(),
            r#"{"profileIds":["p"],"name":"B","age":3}"#
        );
        // Values replaced in place, new keys appended, no key removed.
        let stored = obj(json!({"profileIds":["q"],"old":true,"name":"A"}));
        let merged = user_as_updated(&stored, &wanted);
        assert_eq!(
            Value::Object(merged.clone()).to_string(),
            r#"{"profileIds":["p"],"old":true,"name":"B","age":3}"#
        );
        let note = inexact_user(&merged, &wanted).unwrap_or_default();
        assert!(note.contains(r#"key(s) "old""#), "{note}");
        let reordered = obj(json!({"profileIds":["p"],"age":3,"name":"B"}));
        let note = inexact_user(&user_as_updated(&reordered, &wanted), &wanted).unwrap_or_default();
        assert!(note.contains("another order"), "{note}");
        let same = obj(json!({"profileIds":["q"],"name":"A"}));
        let update = obj(json!({"profileIds":["p"],"name":"B","age":3}));
        assert_eq!(
            inexact_user(&user_as_updated(&same, &update), &update),
            None
        );
    }
}
