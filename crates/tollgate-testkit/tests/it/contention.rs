//! Contention: many clients writing the same few profiles at once. Every update carries a value that
//! identifies it (`c<client>` = the client's update number), so a lost, duplicated or half-applied
//! update is visible: the acknowledged `_version`s of a profile must be exactly 2, 3, … 1 + n, each
//! owned by one acknowledged request, and the `_source` each acknowledgement returned must be the
//! fold of every acknowledged body up to its version, in version order (`update-profile.md` §5, §8).
//!
//! The store runs with `synchronous = "off"`: the write path (group commit, savepoints,
//! compare-and-swap) is the one under test, not the disk; `crates/tollgate-server/tests/crash.rs`
//! covers durability.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tollgate_server::Config;
use tollgate_testkit::{TestServer, WsClient};

const PROFILES: usize = 5;

fn fast_store(c: &mut Config) {
    c.storage.synchronous = "off".to_owned();
}

fn profile_id(p: usize) -> String {
    format!("race-{p}")
}

/// One acknowledged (or refused) update, as the client saw it.
struct Outcome {
    client: usize,
    update: u64,
    profile: usize,
    answer: Value,
}

async fn create_profiles(c: &mut WsClient) {
    for p in 0..PROFILES {
        let r = c
            .call(
                json!({"controller":"security","action":"createProfile","_id":profile_id(p),
                "body":{"policies":[{"roleId":"default"}]}}),
            )
            .await;
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["result"]["_version"], 1, "{r}");
    }
}

/// `clients` WebSocket clients, each sending `updates` updates one after the other: update `j` of
/// client `i` goes to profile `(i + j) % PROFILES` with body `{"c<i>": j}`.
async fn run_updates(
    s: &TestServer,
    clients: usize,
    updates: u64,
    retry_on_conflict: u64,
) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut client = s.ws().await;
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for j in 0..updates {
                let profile = (i + j as usize) % PROFILES;
                let answer = client
                    .call(json!({"controller":"security","action":"updateProfile",
                        "_id":profile_id(profile),"body":{ format!("c{i}"): j },
                        "retryOnConflict":retry_on_conflict,"requestId":format!("u{i}-{j}")}))
                    .await;
                outcomes.push(Outcome {
                    client: i,
                    update: j,
                    profile,
                    answer,
                });
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("client task: {e}")));
    }
    all
}

/// The `c<i>` keys of a `_source`, in stored order.
fn client_keys(source: &Value) -> Vec<(String, Value)> {
    source
        .as_object()
        .unwrap_or_else(|| panic!("no _source object: {source}"))
        .iter()
        .filter(|(k, _)| k.starts_with('c'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks one profile's acknowledged updates against each other and against its final state:
/// versions 2..=1+n, one acknowledgement each, every returned `_source` equal to the replay of the
/// acknowledged bodies in version order (a replaced key keeps its place, a new key is appended).
/// Returns the number of acknowledged updates.
fn check_profile(profile: usize, acked: &[&Outcome], final_doc: &Value) -> u64 {
    let id = profile_id(profile);
    let mut by_version: BTreeMap<u64, &Outcome> = BTreeMap::new();
    for o in acked {
        let v = o.answer["result"]["_version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no _version in {}", o.answer));
        if let Some(other) = by_version.insert(v, o) {
            panic!(
                "{id}: version {v} acknowledged twice (u{}-{} and u{}-{}): a lost update",
                other.client, other.update, o.client, o.update
            );
        }
    }
    let n = acked.len() as u64;
    let versions: Vec<u64> = by_version.keys().copied().collect();
    let expected: Vec<u64> = (2..2 + n).collect();
    assert_eq!(versions, expected, "{id}: acknowledged versions");
    let mut state: Map<String, Value> = Map::new();
    for (v, o) in &by_version {
        state.insert(format!("c{}", o.client), json!(o.update));
        let want: Vec<(String, Value)> =
            state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            client_keys(&o.answer["result"]["_source"]),
            want,
            "{id}: the _source acknowledged at version {v} (u{}-{}) is not the replay of the \
             acknowledged updates",
            o.client,
            o.update
        );
        assert_eq!(o.answer["result"]["_id"], id.as_str());
    }
    assert_eq!(final_doc["status"], 200, "{final_doc}");
    assert_eq!(
        final_doc["result"]["_version"],
        1 + n,
        "{id}: final _version is not 1 + the acknowledged updates"
    );
    let want: Vec<(String, Value)> = state.into_iter().collect();
    assert_eq!(
        client_keys(&final_doc["result"]["_source"]),
        want,
        "{id}: final _source"
    );
    // The policies were never touched.
    assert_eq!(
        final_doc["result"]["_source"]["policies"],
        json!([{"roleId":"default"}])
    );
    n
}

async fn check_all(c: &mut WsClient, outcomes: &[Outcome]) -> u64 {
    let mut total = 0;
    for p in 0..PROFILES {
        let acked: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.profile == p && o.answer["status"] == 200)
            .collect();
        let doc = c
            .call(json!({"controller":"security","action":"getProfile","_id":profile_id(p)}))
            .await;
        total += check_profile(p, &acked, &doc);
    }
    total
}

#[track_caller]
fn assert_too_many_changes(o: &Outcome) {
    let r = &o.answer;
    let id = profile_id(o.profile);
    assert_eq!(r["status"], 500, "{r}");
    assert_eq!(r["error"]["id"], "services.storage.too_many_changes", "{r}");
    assert_eq!(r["error"]["status"], 500, "{r}");
    assert_eq!(
        r["error"]["message"],
        format!(
            "Unable to modify document \"{id}\": cluster sync failed (too many simultaneous changes applied)"
        ),
        "{r}"
    );
    assert_eq!(r["error"]["props"], json!([id]), "{r}");
    assert_eq!(r["result"], Value::Null, "{r}");
    assert_eq!(r["requestId"], format!("u{}-{}", o.client, o.update));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_profile_with_retries_loses_no_update_under_contention() {
    let s = TestServer::start_with(fast_store, vec![]).await;
    let mut c = s.ws().await;
    create_profiles(&mut c).await;
    let outcomes = run_updates(&s, 50, 100, 100).await;
    assert_eq!(outcomes.len(), 5000);
    for o in &outcomes {
        assert_eq!(
            o.answer["status"], 200,
            "u{}-{} on {}: {}",
            o.client, o.update, o.profile, o.answer
        );
        assert_eq!(o.answer["requestId"], format!("u{}-{}", o.client, o.update));
    }
    let acked = check_all(&mut c, &outcomes).await;
    assert_eq!(acked, 5000);
    // Each client's key holds its last update to that profile: update j goes to (i + j) % 5, so the
    // last one to profile p is the largest j < 100 with (i + j) % 5 == p.
    for p in 0..PROFILES {
        let doc = c
            .call(json!({"controller":"security","action":"getProfile","_id":profile_id(p)}))
            .await;
        assert_eq!(doc["result"]["_version"], 1001, "{doc}");
        for i in 0..50usize {
            let last = (0..100u64)
                .rev()
                .find(|j| (i + *j as usize) % PROFILES == p)
                .unwrap_or_else(|| panic!("no update of c{i} to {p}"));
            assert_eq!(
                doc["result"]["_source"][format!("c{i}")],
                last,
                "c{i} on race-{p}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_profile_without_retries_applies_whole_or_refuses() {
    let s = TestServer::start_with(fast_store, vec![]).await;
    let mut c = s.ws().await;
    create_profiles(&mut c).await;
    let outcomes = run_updates(&s, 50, 100, 0).await;
    let mut refused = 0u64;
    for o in &outcomes {
        match o.answer["status"].as_u64() {
            Some(200) => {
                assert_eq!(o.answer["requestId"], format!("u{}-{}", o.client, o.update));
                // Its own effect is in the version it acknowledged.
                assert_eq!(
                    o.answer["result"]["_source"][format!("c{}", o.client)],
                    o.update,
                    "{}",
                    o.answer
                );
            }
            _ => {
                assert_too_many_changes(o);
                refused += 1;
            }
        }
    }
    // The version chain and the replay prove that no refused update was written: a refused update
    // applied anyway would be an extra version, or a value no acknowledgement accounts for.
    let acked = check_all(&mut c, &outcomes).await;
    assert_eq!(acked + refused, 5000);
    eprintln!("retryOnConflict=0: {acked} applied, {refused} refused with too_many_changes");
}

/// The documented outcome of one of the storm's answers, or `None` for anything else.
fn storm_outcome(action: &str, r: &Value) -> Option<&'static str> {
    let status = r["status"].as_u64().unwrap_or(0);
    let error = r["error"]["id"].as_str().unwrap_or("");
    let well_formed = if status == 200 {
        r["error"].is_null() && r["result"]["_id"] == "storm"
    } else {
        r["error"]["status"] == status && r["result"].is_null()
    };
    if !well_formed {
        return None;
    }
    match (action, status, error) {
        ("createProfile", 200, _) if r["result"]["_version"] == 1 => Some("created"),
        ("createProfile", 400, "services.storage.document_already_exists") => Some("exists"),
        ("updateProfile", 200, _) => Some("updated"),
        ("updateProfile" | "deleteProfile", 404, "security.profile.not_found")
            if r["error"]["message"] == "Profile \"storm\" not found." =>
        {
            Some("not_found")
        }
        ("updateProfile", 500, "services.storage.too_many_changes") => Some("too_many_changes"),
        ("deleteProfile", 200, _) if r["result"] == json!({"_id":"storm"}) => Some("deleted"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_create_update_delete_storm_answers_only_documented_outcomes() {
    let s = TestServer::start_with(fast_store, vec![]).await;
    // 20 clients × 10 requests = 200, all on one profile, the three actions interleaved.
    let mut tasks = Vec::new();
    for i in 0..20usize {
        let mut client = s.ws().await;
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for k in 0..10usize {
                let (action, request) = match (i * 7 + k) % 3 {
                    0 => (
                        "createProfile",
                        json!({"controller":"security","action":"createProfile","_id":"storm",
                            "body":{"policies":[{"roleId":"default"}],"by":format!("s{i}-{k}")}}),
                    ),
                    1 => (
                        "updateProfile",
                        json!({"controller":"security","action":"updateProfile","_id":"storm",
                            "body":{ format!("c{i}"): k },"retryOnConflict": (k % 2) * 5}),
                    ),
                    _ => (
                        "deleteProfile",
                        json!({"controller":"security","action":"deleteProfile","_id":"storm"}),
                    ),
                };
                let answer = client.call(request).await;
                answers.push((action, answer));
            }
            answers
        }));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut undocumented = Vec::new();
    for t in tasks {
        for (action, answer) in t.await.unwrap_or_else(|e| panic!("client task: {e}")) {
            // Every answer is classified before failing, so one run shows every undocumented one.
            match storm_outcome(action, &answer) {
                Some(kind) => *counts.entry(format!("{action}:{kind}")).or_default() += 1,
                None => undocumented.push(format!("{action}: {answer}")),
            }
        }
    }
    eprintln!("storm outcomes: {counts:?}");
    assert!(
        undocumented.is_empty(),
        "{} undocumented answer(s), e.g. {}",
        undocumented.len(),
        undocumented.first().map_or("", String::as_str)
    );
    assert_eq!(counts.values().sum::<u64>(), 200);
    // Once quiet, the node's cache (getProfile) and the store (updateProfile reads the store) agree.
    let mut c = s.ws().await;
    let cached = c
        .call(json!({"controller":"security","action":"getProfile","_id":"storm"}))
        .await;
    let written = c
        .call(json!({"controller":"security","action":"updateProfile","_id":"storm","body":{}}))
        .await;
    // Creations and deletions alternate (absent → present → absent …), starting absent: the
    // successful ones differ by one exactly when the profile exists at the end.
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let exists = u64::from(cached["status"] == 200);
    assert_eq!(
        count("createProfile:created"),
        count("deleteProfile:deleted") + exists,
        "successful creations and deletions do not alternate: {counts:?}, final {cached}"
    );
    match cached["status"].as_u64() {
        Some(200) => {
            assert_eq!(written["status"], 200, "{written}");
            let v = cached["result"]["_version"].as_u64().unwrap_or(0);
            assert_eq!(
                written["result"]["_version"],
                v + 1,
                "{cached} vs {written}"
            );
        }
        _ => {
            assert_eq!(
                cached["error"]["id"], "security.profile.not_found",
                "{cached}"
            );
            assert_eq!(
                written["error"]["id"], "security.profile.not_found",
                "{written}"
            );
        }
    }
}
