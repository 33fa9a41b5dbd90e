//! The lock-out guard (`docs/api/lockout.md`): a change after which no user could call both
//! `security:updateProfile` and `security:updateRole` is refused with `security.rights.lockout`
//! (412) unless `allowLockout: true`, for profile, role and user changes and deletions; through
//! real sockets.

use serde_json::{Value, json};
use tollgate_testkit::{TestServer, first_admin, http_once, login_token};

fn req(controller: &str, action: &str, jwt: &str, extra: Value) -> Value {
    let mut r = json!({"controller":controller,"action":action,"jwt":jwt});
    if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    r
}

const LOCKOUT: &str = r#"{"code":117637171,"id":"security.rights.lockout","message":"This change would leave no user able to call security:updateProfile and security:updateRole. Send allowLockout: true to make it anyway.","props":[],"status":412}"#;

#[track_caller]
fn assert_lockout(r: &Value, what: &str) {
    assert_eq!(r["status"], 412, "{what}: {r}");
    assert_eq!(r["error"].to_string(), LOCKOUT, "{what}");
}

#[tokio::test]
async fn changes_that_leave_no_admin_are_refused_unless_allowed() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    let call = |action: &str, extra: Value| req("security", action, &jwt, extra);

    // The admin profile loses the admin role; the admin role loses its rights; the only admin
    // loses the profile, or is deleted: each would leave nobody able to repair it.
    let r = c
        .call(call(
            "updateProfile",
            json!({"_id":"admin","body":{"policies":[{"roleId":"default"}]}}),
        ))
        .await;
    assert_lockout(&r, "updateProfile admin");
    let r = c
        .call(call(
            "createOrReplaceProfile",
            json!({"_id":"admin","body":{"policies":[{"roleId":"default"}]}}),
        ))
        .await;
    assert_lockout(&r, "createOrReplaceProfile admin");
    let r = c
        .call(call(
            "updateRole",
            json!({"_id":"admin","body":{"controllers":{"auth":{"actions":{"*":true}}}}}),
        ))
        .await;
    assert_lockout(&r, "updateRole admin");
    let r = c
        .call(call("createOrReplaceRole", json!({"_id":"admin","body":{"controllers":{"security":{"actions":{"updateProfile":true}}}}})))
        .await;
    assert_lockout(&r, "createOrReplaceRole admin without updateRole");
    let r = c
        .call(call(
            "updateUser",
            json!({"_id":"root","body":{"profileIds":["default"]}}),
        ))
        .await;
    assert_lockout(&r, "updateUser root");
    let r = c.call(call("deleteUser", json!({"_id":"root"}))).await;
    assert_lockout(&r, "deleteUser root");

    // A profile of its own, the admin's only one, deleted with its users' assignments removed.
    let r = c
        .call(call(
            "createProfile",
            json!({"_id":"sole","body":{"policies":[{"roleId":"admin"}]}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(call(
            "updateUser",
            json!({"_id":"root","body":{"profileIds":["sole"]}}),
        ))
        .await;
    assert_eq!(
        r["status"], 200,
        "moving to another admin profile keeps an admin: {r}"
    );
    let r = c
        .call(call(
            "deleteProfile",
            json!({"_id":"sole","onAssignedUsers":"remove"}),
        ))
        .await;
    assert_lockout(&r, "deleteProfile sole, removed from its users");
    // Nothing was written by the refused changes.
    let r = c.call(call("getUser", json!({"_id":"root"}))).await;
    assert_eq!(r["result"]["_source"]["profileIds"], json!(["sole"]), "{r}");
    let r = c.call(call("getProfile", json!({"_id":"admin"}))).await;
    assert_eq!(
        r["result"]["_source"]["policies"],
        json!([{"roleId":"admin"}]),
        "{r}"
    );

    // With a second admin, the first one may lose its rights.
    let r = c
        .call(call(
            "createUser",
            json!({"_id":"second","body":{"content":{"profileIds":["admin"]},
            "credentials":{"local":{"username":"second","password":"second-pw"}}}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let second = login_token(&s, "second", "second-pw").await;
    let r = c
        .call(call(
            "updateUser",
            json!({"_id":"root","body":{"profileIds":["default"]}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "another admin exists: {r}");
    // The second one is now the last: deleting it is refused, then allowed when asked for.
    let as_second = |action: &str, extra: Value| req("security", action, &second, extra);
    let r = c
        .call(as_second("deleteUser", json!({"_id":"second"})))
        .await;
    assert_lockout(&r, "deleteUser second");
    let r = c
        .call(as_second(
            "deleteUser",
            json!({"_id":"second","allowLockout":true}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // Locked out indeed: root (default profile) can no longer change profiles.
    let r = c
        .call(call(
            "updateProfile",
            json!({"_id":"default","body":{"rateLimit":5}}),
        ))
        .await;
    assert_eq!(r["error"]["id"], "security.rights.forbidden", "{r}");
}

#[tokio::test]
async fn allow_lockout_is_a_boolean_and_harmless_changes_pass() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    let r = c
        .call(req(
            "security",
            "updateProfile",
            &jwt,
            json!({"_id":"default","allowLockout":"yes","body":{"rateLimit":5}}),
        ))
        .await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_type", "{r}");
    // A change that keeps every admin needs no flag (and the admin profile may change as long as
    // it still grants both actions).
    let r = c
        .call(req(
            "security",
            "updateProfile",
            &jwt,
            json!({"_id":"admin","body":{"rateLimit":100}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // The admin profile locked out on purpose, over HTTP with ?allowLockout.
    let body = json!({"policies":[{"roleId":"default"}]}).to_string();
    let auth = format!("Bearer {jwt}");
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/admin/_update?allowLockout=true",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn on_a_fresh_install_only_changes_to_the_anonymous_rights_can_lock_out() {
    // No user yet: anonymous administers, through the role `anonymous` of the profile `anonymous`.
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    // A profile granting every right through the role `default` changes: anonymous still
    // administers, so nothing is refused.
    let r = c
        .call(json!({"controller":"security","action":"updateProfile","_id":"default","body":{"rateLimit":5}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(json!({"controller":"security","action":"updateRole","_id":"default","body":{"controllers":{"auth":{"actions":{"*":true}}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // Taking administration from anonymous leaves nobody: refused.
    let r = c
        .call(json!({"controller":"security","action":"updateRole","_id":"anonymous","body":{"controllers":{"auth":{"actions":{"*":true}}}}}))
        .await;
    assert_lockout(&r, "updateRole anonymous");
    // A change to the anonymous profile that keeps its administration passes (a restricted policy
    // still grants the actions that name no index).
    let r = c
        .call(
            json!({"controller":"security","action":"updateProfile","_id":"anonymous","force":true,
            "body":{"policies":[{"roleId":"anonymous","restrictedTo":[{"index":"nyc"}]}]}}),
        )
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // With allowLockout it is made.
    let r = c
        .call(json!({"controller":"security","action":"updateRole","_id":"anonymous","allowLockout":true,"body":{"controllers":{"auth":{"actions":{"*":true}}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
}
