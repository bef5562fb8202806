//! Triggers over HTTP: saving with checks, the dry run, and firing end to end — messages with
//! placeholders on the customer's socket, tags and the triggered flag seen by the next trigger,
//! suspension, e-mail requests, routing events, and what is never fired twice.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{eventually, sdk_session, Scene, Socket, TestServer};

fn text_trigger(name: &str, event: &str, conditions: Value, actions: Value) -> Value {
    json!({"name": name, "event": event, "conditions": conditions, "actions": actions})
}

async fn create(scene: &Scene<'_>, trigger: Value) -> Value {
    let (s, t) = scene.admin(Method::POST, "/v1/triggers", Some(trigger)).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    t
}

async fn refused(scene: &Scene<'_>, trigger: Value) -> (String, String) {
    let (s, p) = scene.admin(Method::POST, "/v1/triggers", Some(trigger)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    (p["field"].as_str().unwrap_or_default().to_string(), p["detail"].as_str().unwrap_or_default().to_string())
}

async fn fired(scene: &Scene<'_>, conversation: &str, n: usize) -> Vec<Value> {
    eventually("trigger_fired", || async {
        let fired = scene.log_all(&format!("conversation_id={conversation}&type=trigger_fired"), 100).await;
        (fired.len() >= n).then_some(fired)
    })
    .await
}

on_both_backends! {
    async fn triggers_are_checked_when_saved() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let hello = json!([{"type": "send_message", "text": "hi"}]);
        let t = create(&scene, text_trigger("Greeter", "message_sent", json!([]), hello.clone())).await;
        assert_eq!((t["position"].as_i64(), t["enabled"].as_bool(), t["match"].as_str()), (Some(1), Some(true), Some("all")));
        let second = create(&scene, text_trigger("Second", "message_sent", json!([]), hello.clone())).await;
        assert_eq!(second["position"], 2, "after the last");

        let bad_operator = json!([{"field": "hour_of_day", "operator": "contains", "value": "9"}]);
        let (field, detail) = refused(&scene, text_trigger("x", "message_sent", bad_operator, hello.clone())).await;
        assert_eq!(field, "conditions[0].operator", "{detail}");
        let bad_pattern = json!([{"field": "message", "operator": "is", "value": "x"}, {"field": "message", "operator": "regex", "value": "(?P<y>a"}]);
        let (field, detail) = refused(&scene, text_trigger("x", "message_sent", bad_pattern, hello.clone())).await;
        assert_eq!(field, "conditions[1].value");
        assert!(detail.contains("position 0"), "says where the pattern fails: {detail}");
        let (field, _) = refused(&scene, text_trigger("x", "message_sent", json!([]), json!([{"type": "suspend_user"}, {"type": "close_conversation"}]))).await;
        assert_eq!(field, "actions[0]", "suspend_user must be last");
        let (field, _) = refused(&scene, text_trigger("x", "message_sent", json!([]), json!([{"type": "wait", "seconds": 3601}]))).await;
        assert_eq!(field, "actions[0].seconds");
        let many: Vec<Value> = (0..26).map(|_| json!({"field": "queue_size", "operator": "is", "value": 1})).collect();
        let (field, _) = refused(&scene, text_trigger("x", "message_sent", json!(many), hello.clone())).await;
        assert_eq!(field, "conditions");
        let (field, _) = refused(&scene, text_trigger("x", "message_sent", json!([{"field": "customer_previous_conversations", "operator": "is", "value": 32001}]), hello.clone())).await;
        assert_eq!(field, "conditions[0].value");
        let (s, p) = scene.admin(Method::POST, "/v1/triggers", Some(json!({"name": "x", "event": "tags_changed", "actions": hello}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");

        // Replacing is checked the same way, also when it re-enables the trigger.
        let id = t["id"].as_str().expect("id");
        let mut over = text_trigger("Greeter", "message_sent", json!(many), hello.clone());
        over["enabled"] = json!(true);
        let (s, p) = scene.admin(Method::PUT, &format!("/v1/triggers/{id}"), Some(over)).await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("conditions")));
        let mut off = text_trigger("Greeter", "message_sent", json!([]), hello.clone());
        off["enabled"] = json!(false);
        let (s, p) = scene.admin(Method::PUT, &format!("/v1/triggers/{id}"), Some(off)).await;
        assert_eq!((s, p["enabled"].as_bool(), p["position"].as_i64()), (StatusCode::OK, Some(false), Some(1)));
        let (s, list) = scene.admin(Method::GET, "/v1/triggers", None).await;
        assert_eq!((s, list["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
        let (s, _) = scene.admin(Method::DELETE, &format!("/v1/triggers/{id}"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = scene.admin(Method::GET, &format!("/v1/triggers/{id}"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = scene.as_agent(Method::GET, "/v1/triggers", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "triggers are for admins");
    }
}

on_both_backends! {
    async fn the_dry_run_shows_each_condition_and_the_rendered_actions_and_changes_nothing() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let before = scene.log_all("", 1000).await.len();
        let trigger = text_trigger(
            "Out of hours",
            "message_sent",
            json!([
                {"field": "hour_of_day", "operator": "greater_than_or_equal", "value": 18},
                {"field": "message", "operator": "regex", "value": r"(?P<year>(?:19|20)\d\d)(?P<delimiter>[- /.])(?P<month>0[1-9]|1[012])\2(?P<day>0[1-9]|[12][0-9]|3[01])"}
            ]),
            json!([{"type": "send_message", "text": "Hi @customer_name, we open at 9 (it is @hour_of_day h). @unknown stays."}, {"type": "add_tags", "tags": ["after-hours"]}]),
        );
        let (s, run) = scene
            .admin(Method::POST, "/v1/triggers/test", Some(json!({"trigger": trigger, "context": {"hour_of_day": 20, "message": "2014-07-28", "customer_name": "Kamal"}})))
            .await;
        assert_eq!(s, StatusCode::OK, "{run}");
        assert_eq!(run["matched"], true);
        assert_eq!(run["conditions"][0]["result"], true);
        assert_eq!(run["conditions"][1]["result"], true);
        assert_eq!(run["actions"][0]["text"], "Hi Kamal, we open at 9 (it is 20 h). @unknown stays.");
        let (_, run) = scene
            .admin(Method::POST, "/v1/triggers/test", Some(json!({"trigger": trigger, "context": {"hour_of_day": 17, "message": "2014-07/28"}})))
            .await;
        assert_eq!((run["matched"].as_bool(), run["conditions"][0]["result"].as_bool(), run["conditions"][1]["result"].as_bool()), (Some(false), Some(false), Some(false)));

        // A catastrophic pattern gives up, counts as no match, and says so.
        let slow = text_trigger("slow", "message_sent", json!([{"field": "message", "operator": "regex", "value": "(a+)+$"}]), json!([{"type": "close_conversation"}]));
        let value = format!("{}b", "a".repeat(30));
        let (s, run) = scene.admin(Method::POST, "/v1/triggers/test", Some(json!({"trigger": slow, "context": {"message": value}}))).await;
        assert_eq!(s, StatusCode::OK, "{run}");
        assert_eq!(run["matched"], false);
        assert!(run["conditions"][0]["error"].as_str().is_some_and(|e| e.contains("steps")), "{run}");

        let saved = create(&scene, trigger).await;
        let (s, run) = scene
            .admin(Method::POST, "/v1/triggers/test", Some(json!({"trigger_id": saved["id"], "context": {"hour_of_day": 23, "message": "1999.12.31"}})))
            .await;
        assert_eq!((s, run["matched"].as_bool()), (StatusCode::OK, Some(true)), "{run}");
        assert_eq!(scene.log_all("", 1000).await.len(), before, "a dry run writes nothing");
    }
}

on_both_backends! {
    async fn a_customer_message_fires_a_reply_that_reaches_their_socket_with_placeholders() {
        let srv = TestServer::start().await;
        let scene = Scene::with_integration(&srv, json!({"name": "Widget", "type": "web"})).await;
        create(&scene, text_trigger(
            "Greeter",
            "message_sent",
            json!([{"field": "message", "operator": "contains", "value": "HELLO"}]),
            json!([{"type": "send_message", "text": "Hi @customer_name, you said “@message”. Queue: @queue_size.", "sender_name": "Parley bot"}]),
        ))
        .await;
        let (_, session) = sdk_session(&srv, &scene.integration, None, None).await;
        let token = session["session_token"].as_str().expect("token").to_string();
        let customer = session["customer"]["id"].as_str().expect("customer").to_string();
        let (s, _) = scene.admin(Method::PATCH, &format!("/v1/customers/{customer}"), Some(json!({"name": "Kamal"}))).await;
        assert_eq!(s, StatusCode::OK);
        let (_, started) = srv.call(&token, Method::POST, "/v1/sdk/conversations", Some(json!({}))).await;
        let c = started["conversation"]["id"].as_str().expect("id").to_string();
        let mut socket = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
        socket.expect("hello").await;
        let (s, _) = srv.call(&token, Method::POST, &format!("/v1/sdk/conversations/{c}/messages"), Some(json!({"content": {"type": "text", "text": "hello there"}}))).await;
        assert_eq!(s, StatusCode::CREATED);
        let reply = loop {
            let frame = socket.expect("event").await;
            if frame["event"]["type"] == "message_sent" {
                break frame["event"]["data"]["message"].clone();
            }
        };
        assert_eq!(reply["content"]["text"], "Hi Kamal, you said “hello there”. Queue: 1.");
        assert_eq!(reply["author"], json!({"type": "system", "id": null, "name": "Parley bot"}));
        let fired = fired(&scene, &c, 1).await;
        assert_eq!(fired[0]["data"]["name"], "Greeter");
        assert_eq!(fired[0]["actor"]["type"], "system");
        // An automated reply is nobody's answer: the conversation still waits for a human.
        let conversation = scene.get_conversation(&c).await;
        assert_eq!((conversation["status"].as_str(), conversation["first_response_at"].as_str()), (Some("open"), None));

        // Its own message does not fire it again; a message without "hello" does not match.
        srv.call(&token, Method::POST, &format!("/v1/sdk/conversations/{c}/messages"), Some(json!({"content": {"type": "text", "text": "bye"}}))).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(scene.log_all(&format!("conversation_id={c}&type=trigger_fired"), 100).await.len(), 1);
    }
}

on_both_backends! {
    async fn later_triggers_see_the_tags_and_flag_set_by_earlier_ones() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        create(&scene, text_trigger(
            "Mark",
            "message_sent",
            json!([{"field": "customer_triggered", "operator": "is", "value": false}]),
            json!([{"type": "add_tags", "tags": ["vip", "new"]}, {"type": "remove_tags", "tags": ["new"]}, {"type": "set_triggered", "value": true}]),
        ))
        .await;
        create(&scene, text_trigger(
            "Follow",
            "message_sent",
            json!([{"field": "customer_triggered", "operator": "is", "value": true}, {"field": "tags", "operator": "is", "value": "vip"}]),
            json!([{"type": "add_tags", "tags": ["second"]}]),
        ))
        .await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "hi").await;
        let fired = fired(&scene, &c, 2).await;
        let names: Vec<&str> = fired.iter().map(|f| f["data"]["name"].as_str().expect("name")).collect();
        assert_eq!(names, ["Mark", "Follow"], "in position order, the second seeing the first's effects");
        assert_eq!(scene.get_conversation(&c).await["tags"], json!(["vip", "second"]));
        let customer = scene.get_conversation(&c).await["customer_id"].as_str().expect("customer").to_string();
        let (_, profile) = scene.admin(Method::GET, &format!("/v1/customers/{customer}"), None).await;
        assert_eq!(profile["triggered"], true);
        let changed = scene.log_all("type=tags_changed", 100).await;
        assert!(changed.iter().all(|e| e["actor"]["type"] == "system" && e["actor"]["triggers"].is_array()), "acted as the trigger");
    }
}

on_both_backends! {
    async fn suspend_user_refuses_the_next_message_and_a_spam_tag_closes() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        create(&scene, text_trigger(
            "Spam closer",
            "message_sent",
            json!([{"field": "tags", "operator": "is", "value": "spam"}]),
            json!([{"type": "close_conversation"}, {"type": "suspend_user"}]),
        ))
        .await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "buy cheap watches").await;
        // An outside classifier tags it; the next message is closed and the sender suspended.
        let (s, _) = scene.admin(Method::POST, &format!("/v1/conversations/{c}/tags"), Some(json!({"tags": ["spam"]}))).await;
        assert_eq!(s, StatusCode::OK);
        scene.customer_says(&c, "really cheap").await;
        fired(&scene, &c, 1).await;
        assert_eq!(scene.get_conversation(&c).await["status"], "ended");
        let (s, p) = scene.customer_says(&c, "again").await;
        assert_eq!((s, p["code"].as_str()), (StatusCode::CONFLICT, Some("customer_suspended")), "{p}");
    }
}

on_both_backends! {
    async fn request_email_on_first_queueing_and_the_answer_updates_the_customer() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        create(&scene, text_trigger(
            "Ask for e-mail",
            "conversation_queued",
            json!([{"field": "initial_routing", "operator": "is", "value": true}, {"field": "customer_email", "operator": "is", "value": ""}]),
            json!([{"type": "request_email", "text": "Where can we reach you, @customer_name?"}]),
        ))
        .await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "hello").await;
        fired(&scene, &c, 1).await;
        let (_, history) = scene.admin(Method::GET, &format!("/v1/conversations/{c}/messages"), None).await;
        let form = history["data"].as_array().expect("messages").iter().find(|m| m["content"]["type"] == "form").expect("a form").clone();
        assert_eq!(form["content"]["fields"][0]["type"], "email");
        assert_eq!(form["content"]["fields"][0]["label"], "Where can we reach you, Kamal?");

        let answer = |value: &str| json!({"author": {"type": "customer"}, "content": {"type": "form_response", "fields": [{"name": "email", "value": value}]}});
        let (s, p) = scene.admin(Method::POST, &format!("/v1/conversations/{c}/messages"), Some(answer("not an address"))).await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("content.fields[0].value")), "{p}");
        let (s, _) = scene.admin(Method::POST, &format!("/v1/conversations/{c}/messages"), Some(answer("kamal@example.com"))).await;
        assert_eq!(s, StatusCode::CREATED);
        let customer = scene.get_conversation(&c).await["customer_id"].as_str().expect("customer").to_string();
        let (_, profile) = scene.admin(Method::GET, &format!("/v1/customers/{customer}"), None).await;
        assert_eq!(profile["email"], "kamal@example.com");
        let updated = scene.log_all("type=customer_updated", 100).await;
        assert_eq!(updated.last().expect("updated")["data"]["changed"], json!(["email"]));
    }
}

on_both_backends! {
    async fn conversation_assigned_fires_only_for_queue_assignments() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (_, group) = scene.admin(Method::POST, "/v1/groups", Some(json!({"name": "Support", "agent_ids": [scene.agent]}))).await;
        let (_, integration) = scene
            .admin(Method::POST, "/v1/integrations", Some(json!({"name": "Routed", "type": "api", "default_group_id": group["id"]})))
            .await;
        create(&scene, text_trigger(
            "Introduce",
            "conversation_assigned",
            json!([{"field": "group", "operator": "is", "value": "Support"}, {"field": "account_status", "operator": "is", "value": "online"}]),
            json!([{"type": "send_message", "text": "An agent is with you now (@queue_size waiting)."}]),
        ))
        .await;
        scene.as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"}))).await;
        let (_, c) = scene.admin(Method::POST, "/v1/conversations", Some(json!({"integration_id": integration["id"], "customer": {"external_id": "x"}}))).await;
        let routed = c["id"].as_str().expect("id").to_string();
        scene.customer_says(&routed, "help").await;
        let fired = fired(&scene, &routed, 1).await;
        assert_eq!(fired[0]["data"]["event"], "conversation_assigned");
        let (_, history) = scene.admin(Method::GET, &format!("/v1/conversations/{routed}/messages"), None).await;
        assert!(history["data"].as_array().expect("messages").iter().any(|m| m["content"]["text"] == "An agent is with you now (0 waiting)."));

        // A direct assignment is a transfer: it fires nothing.
        let direct = scene.conversation().await;
        scene.assign_to_agent(&direct).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(scene.log_all(&format!("conversation_id={direct}&type=trigger_fired"), 10).await.is_empty());
    }
}

on_both_backends! {
    async fn a_wait_holds_the_remaining_actions_and_run_once_fires_once() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let mut trigger = text_trigger(
            "Nudge",
            "message_sent",
            json!([]),
            json!([{"type": "add_tags", "tags": ["seen"]}, {"type": "wait", "seconds": 1}, {"type": "add_tags", "tags": ["nudged"]}]),
        );
        trigger["run_once_per_conversation"] = json!(true);
        create(&scene, trigger).await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "one").await;
        scene.customer_says(&c, "two").await;
        fired(&scene, &c, 1).await;
        assert_eq!(scene.get_conversation(&c).await["tags"], json!(["seen"]), "held by the wait");
        eventually("the actions after the wait", || async {
            (scene.get_conversation(&c).await["tags"] == json!(["seen", "nudged"])).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fired = scene.log_all(&format!("conversation_id={c}&type=trigger_fired"), 100).await;
        assert_eq!(fired.len(), 2, "fired once (the second message does not run it again), resumed once");
        assert_eq!(fired[0]["data"]["actions"][1]["type"], "wait");
    }
}

on_both_backends! {
    async fn triggers_routing_into_each_other_fire_once_each_and_stop() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (_, first) = scene.admin(Method::POST, "/v1/groups", Some(json!({"name": "First"}))).await;
        let (_, second) = scene.admin(Method::POST, "/v1/groups", Some(json!({"name": "Second"}))).await;
        // Each sends what is queued in its group to the other: a loop, unless chains stop it.
        create(&scene, text_trigger("to second", "conversation_queued", json!([{"field": "group", "operator": "is_not", "value": "Second"}]), json!([{"type": "route_to_group", "group_id": second["id"]}]))).await;
        create(&scene, text_trigger("to first", "conversation_queued", json!([{"field": "group", "operator": "is", "value": "Second"}]), json!([{"type": "route_to_group", "group_id": first["id"]}]))).await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "hello").await;
        fired(&scene, &c, 3).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // On the customer's queueing, "to second" runs, then "to first" sees the conversation in
        // Second and runs too (each trigger sees the effects of those before it). What "to
        // first" caused fires "to second" once more; what that caused has both in its chain.
        let fired = scene.log_all(&format!("conversation_id={c}&type=trigger_fired"), 100).await;
        let names: Vec<&str> = fired.iter().map(|f| f["data"]["name"].as_str().expect("name")).collect();
        assert_eq!(names, ["to second", "to first", "to second"], "and then it stops");
        assert_eq!(fired[0]["data"]["caused_by"], fired[1]["data"]["caused_by"], "both on the customer's queueing");
        assert_eq!(scene.get_conversation(&c).await["group_id"], second["id"]);
        let queued = scene.log_all(&format!("conversation_id={c}&type=conversation_queued"), 100).await;
        assert_eq!(queued.len(), 4);
        assert_eq!(queued[3]["actor"]["triggers"].as_array().map(Vec::len), Some(2), "the chain is carried");
    }
}
