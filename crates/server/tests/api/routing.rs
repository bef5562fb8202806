//! The router: auto-accept spreading by the rule, manual-accept offers that expire and move on,
//! concurrent accepts within capacity, presence draining the queue in order, transfers, the
//! customer's live queue position and estimate, and the status rollup over HTTP.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{eventually, sdk_session, types, Scene, Socket, TestServer};

/// A group of agents (each with its own key) and an `api` integration routed to it.
struct Team<'a> {
    scene: Scene<'a>,
    group: String,
    integration: String,
    /// (id, key), in id order — the order the rule breaks ties in.
    agents: Vec<(String, String)>,
}

impl<'a> Team<'a> {
    async fn new(srv: &'a TestServer, mode: &str, size: usize, capacity: i64) -> Team<'a> {
        let scene = Scene::new(srv).await;
        let mut agents = Vec::new();
        for i in 0..size {
            let (s, a) = scene
                .admin(Method::POST, "/v1/agents", Some(json!({"name": format!("agent {i}"), "capacity": capacity})))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{a}");
            let id = a["id"].as_str().expect("id").to_string();
            let (s, k) = scene
                .admin(
                    Method::POST,
                    "/v1/api-keys",
                    Some(json!({"name": format!("k{i}"), "role": "agent", "agent_id": id})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{k}");
            agents.push((id, k["secret"].as_str().expect("secret").to_string()));
        }
        agents.sort();
        let ids: Vec<&String> = agents.iter().map(|(id, _)| id).collect();
        let (s, g) = scene
            .admin(
                Method::POST,
                "/v1/groups",
                Some(json!({"name": "Support", "assignment_mode": mode, "agent_ids": ids})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{g}");
        let group = g["id"].as_str().expect("group").to_string();
        let (s, i) = scene
            .admin(
                Method::POST,
                "/v1/integrations",
                Some(json!({"name": "Routed", "type": "api", "default_group_id": group})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        let integration = i["id"].as_str().expect("integration").to_string();
        Team { scene, group, integration, agents }
    }

    async fn presence(&self, agent: usize, status: &str) {
        let path = format!("/v1/agents/{}/status", self.agents[agent].0);
        let (s, body) = self.scene.admin(Method::PUT, &path, Some(json!({"status": status}))).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    async fn all(&self, status: &str) {
        for i in 0..self.agents.len() {
            self.presence(i, status).await;
        }
    }

    /// A conversation whose customer has written: it waits for a human.
    async fn request(&self, n: usize) -> String {
        let (s, c) = self
            .scene
            .admin(
                Method::POST,
                "/v1/conversations",
                Some(json!({"integration_id": self.integration, "customer": {"external_id": format!("customer-{n}")}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let id = c["id"].as_str().expect("id").to_string();
        let (s, m) = self.scene.customer_says(&id, "I need a human").await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        id
    }

    async fn answer(&self, agent: usize, conversation: &str, accept: bool) -> (StatusCode, Value) {
        let path = format!("/v1/conversations/{conversation}/assignment");
        self.scene.srv.call(&self.agents[agent].1, Method::POST, &path, Some(json!({"accept": accept}))).await
    }

    async fn assignee(&self, conversation: &str) -> Option<String> {
        self.scene.get_conversation(conversation).await["assignee"]["id"].as_str().map(str::to_string)
    }

    async fn events(&self, conversation: &str, kind: &str) -> Vec<Value> {
        self.scene.log_all(&format!("conversation_id={conversation}&type={kind}"), 100).await
    }

    /// Waits for the `n`th offer of a conversation.
    async fn offer(&self, conversation: &str, n: usize) -> Value {
        eventually("an offer", || async {
            let offers = self.events(conversation, "conversation_offered").await;
            offers.get(n - 1).cloned()
        })
        .await
    }

    async fn queue(&self) -> Value {
        let (s, q) = self.scene.admin(Method::GET, "/v1/queue", None).await;
        assert_eq!(s, StatusCode::OK, "{q}");
        q
    }
}

on_both_backends! {
    async fn auto_accept_spreads_by_the_rule_and_the_sixteenth_waits() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 3, 5).await;
        team.all("online").await;
        let mut conversations = Vec::new();
        for n in 0..20 {
            conversations.push(team.request(n).await);
        }
        let queue = eventually("15 assignments", || async {
            let q = team.queue().await;
            (q["queue_size"] == 5).then_some(q)
        })
        .await;
        // Fewest active first, ties to the longest idle (then the lowest id): round the team.
        for (n, c) in conversations.iter().take(15).enumerate() {
            assert_eq!(team.assignee(c).await.as_deref(), Some(team.agents[n % 3].0.as_str()), "conversation {n}");
            let assigned = team.events(c, "conversation_assigned").await;
            assert_eq!(assigned.len(), 1);
            assert_eq!(assigned[0]["data"]["via"], "auto_accept");
            assert_eq!(assigned[0]["actor"]["type"], "system");
        }
        // Capacity 5 each: the 16th to the 20th wait, in order, the 16th next.
        let waiting: Vec<(String, i64)> = queue["groups"][0]["conversations"]
            .as_array()
            .expect("waiting")
            .iter()
            .map(|w| (w["conversation_id"].as_str().expect("id").to_string(), w["position"].as_i64().expect("position")))
            .collect();
        let expected: Vec<(String, i64)> = conversations[15..].iter().cloned().zip(1..).collect();
        assert_eq!(waiting, expected);
        for c in &conversations[15..] {
            assert_eq!(team.assignee(c).await, None);
        }
        for (agent, _) in &team.agents {
            let (_, mine) = team.scene.admin(Method::GET, &format!("/v1/conversations?assignee_id={agent}&limit=100"), None).await;
            assert_eq!(mine["data"].as_array().expect("list").len(), 5, "capacity is never exceeded");
        }
    }
}

on_both_backends! {
    async fn an_offer_not_accepted_in_time_moves_to_the_next_agent() {
        let srv = TestServer::start_with(|c| c.routing.offer_timeout_ms = 500).await;
        let team = Team::new(&srv, "manual_accept", 2, 5).await;
        team.all("online").await;
        let c = team.request(1).await;

        let first = team.offer(&c, 1).await;
        assert_eq!(first["data"]["agent_id"], team.agents[0].0.as_str());
        assert_eq!(team.assignee(&c).await, None, "an offer is not an assignment");
        assert_eq!(team.scene.get_conversation(&c).await["status"], "open");
        let (s, mine) = team.scene.srv.call(&team.agents[0].1, Method::GET, "/v1/offers", None).await;
        assert_eq!(s, StatusCode::OK, "{mine}");
        assert_eq!(mine["data"][0]["conversation_id"], c.as_str());
        assert_eq!(mine["data"][0]["status"], "pending");
        let (_, theirs) = team.scene.srv.call(&team.agents[1].1, Method::GET, "/v1/offers", None).await;
        assert_eq!(theirs["data"], json!([]), "an offer goes to one agent at a time");
        let path = format!("/v1/offers?agent_id={}", team.agents[0].0);
        let (s, _) = team.scene.srv.call(&team.agents[1].1, Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "an agent sees only its own offers");

        let second = team.offer(&c, 2).await;
        assert_eq!(second["data"]["agent_id"], team.agents[1].0.as_str(), "the next agent");
        let ended = team.events(&c, "conversation_offer_withdrawn").await;
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["data"]["reason"], "expired");
        assert_eq!(ended[0]["data"]["agent_id"], team.agents[0].0.as_str());
        let offered_at = |e: &Value| chrono_millis(e["occurred_at"].as_str().expect("time"));
        assert!(offered_at(&second) - offered_at(&first) >= 500, "not before the timeout");

        let (s, late) = team.answer(0, &c, true).await;
        assert_eq!((s, late["code"].as_str()), (StatusCode::CONFLICT, Some("no_pending_offer")), "{late}");
        let (s, taken) = team.answer(1, &c, true).await;
        assert_eq!(s, StatusCode::OK, "{taken}");
        assert_eq!(taken["assignee"]["id"], team.agents[1].0.as_str());
        assert_eq!(taken["status"], "in_progress");
        let assigned = team.events(&c, "conversation_assigned").await;
        assert_eq!(assigned.len(), 1);
        assert_eq!(assigned[0]["data"]["via"], "accept");
        assert_eq!(assigned[0]["data"]["offer_id"], second["data"]["offer_id"]);
        assert!(team.events(&c, "conversation_transferred").await.is_empty());
    }
}

/// Milliseconds since the epoch of an RFC 3339 `…T12:34:56.789Z` time (enough to compare two).
fn chrono_millis(t: &str) -> i64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').expect("T");
    let day: i64 = date.split('-').nth(2).expect("day").parse().expect("day");
    let mut parts = time.split(':');
    let h: i64 = parts.next().expect("h").parse().expect("h");
    let m: i64 = parts.next().expect("m").parse().expect("m");
    let s: f64 = parts.next().expect("s").parse().expect("s");
    ((day * 24 + h) * 60 + m) * 60_000 + (s * 1000.0).round() as i64
}

on_both_backends! {
    async fn concurrent_accepts_have_one_winner_and_capacity_holds() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "manual_accept", 2, 1).await;
        team.all("online").await;
        let x = team.request(1).await;
        let y = team.request(2).await;
        let offer_x = team.offer(&x, 1).await;
        let offer_y = team.offer(&y, 1).await;
        assert_eq!(offer_x["data"]["agent_id"], team.agents[0].0.as_str());
        assert_eq!(offer_y["data"]["agent_id"], team.agents[1].0.as_str(), "an offer holds the first agent's only place");

        let (ax, bx, ay, by) = tokio::join!(
            team.answer(0, &x, true),
            team.answer(1, &x, true),
            team.answer(0, &y, true),
            team.answer(1, &y, true)
        );
        assert_eq!(ax.0, StatusCode::OK, "{}", ax.1);
        assert_eq!(by.0, StatusCode::OK, "{}", by.1);
        assert_eq!(bx.1["code"], "no_pending_offer");
        assert_eq!(ay.1["code"], "no_pending_offer");

        // Both full: a third waits, offered to nobody.
        let z = team.request(3).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(team.events(&z, "conversation_offered").await.is_empty(), "no agent has room");
        assert_eq!(team.queue().await["queue_size"], 1);

        // An agent at capacity cannot accept even a pending offer: a direct transfer filled
        // the place while the offer waited.
        let (s, _) = team.scene.set_status(&x, "ended").await;
        assert_eq!(s, StatusCode::OK);
        let offer_z = team.offer(&z, 1).await;
        assert_eq!(offer_z["data"]["agent_id"], team.agents[0].0.as_str(), "freed capacity is used at once");
        let w = team.request(4).await;
        let (s, body) = team
            .scene
            .admin(Method::POST, &format!("/v1/conversations/{w}/assignment"), Some(json!({"agent_id": team.agents[0].0})))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, full) = team.answer(0, &z, true).await;
        assert_eq!((s, full["code"].as_str()), (StatusCode::CONFLICT, Some("at_capacity")), "{full}");

        // Declining passes it on; the decliner is not asked again for this queue entry, even
        // with room again.
        let (s, declined) = team.answer(0, &z, false).await;
        assert_eq!(s, StatusCode::OK, "{declined}");
        let ended = team.events(&z, "conversation_offer_withdrawn").await;
        assert_eq!(ended.last().expect("ended")["data"]["reason"], "declined");
        let (s, _) = team.scene.set_status(&w, "ended").await;
        assert_eq!(s, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(team.events(&z, "conversation_offered").await.len(), 1, "not offered to the decliner again");
        let (s, _) = team.scene.set_status(&y, "ended").await;
        assert_eq!(s, StatusCode::OK);
        let second = team.offer(&z, 2).await;
        assert_eq!(second["data"]["agent_id"], team.agents[1].0.as_str());
        let (s, _) = team.answer(1, &z, true).await;
        assert_eq!(s, StatusCode::OK);
        let (_, mine) = team
            .scene
            .admin(Method::GET, &format!("/v1/conversations?assignee_id={}&status=in_progress", team.agents[1].0), None)
            .await;
        let mine: Vec<&str> = mine["data"].as_array().expect("list").iter().map(|c| c["id"].as_str().expect("id")).collect();
        assert_eq!(mine, [z.as_str()], "capacity 1 holds");
    }
}

on_both_backends! {
    async fn an_away_agent_gets_nothing_and_coming_back_drains_the_queue_in_order() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 1, 5).await;
        team.presence(0, "online").await;
        team.presence(0, "away").await;
        let mut conversations = Vec::new();
        for n in 0..3 {
            conversations.push(team.request(n).await);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(team.queue().await["queue_size"], 3, "away agents get nothing new");
        assert_eq!(team.queue().await["groups"][0]["status"], "away");

        team.presence(0, "online").await;
        eventually("the queue to drain", || async { (team.queue().await["queue_size"] == 0).then_some(()) }).await;
        let assigned = team.scene.log_all("type=conversation_assigned", 100).await;
        let order: Vec<&str> = assigned.iter().map(|e| e["conversation_id"].as_str().expect("id")).collect();
        assert_eq!(order, conversations.iter().map(String::as_str).collect::<Vec<_>>(), "in queue order");
    }
}

on_both_backends! {
    async fn the_router_finds_its_events_among_many_it_passes_over() {
        // The router reads only the events that can move the queue; the hundreds of messages
        // between them (more than one of its batches) are passed over without being read.
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 1, 5).await;
        team.presence(0, "online").await;
        team.presence(0, "away").await;
        let waiting = team.request(0).await;
        let chatty = team.request(1).await;
        for n in 0..260 {
            let (s, m) = team.scene.customer_says(&chatty, &format!("still there? {n}")).await;
            assert_eq!(s, StatusCode::CREATED, "{m}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(team.queue().await["queue_size"], 2, "away agents get nothing new");

        team.presence(0, "online").await;
        eventually("the queue to drain", || async { (team.queue().await["queue_size"] == 0).then_some(()) }).await;
        let me = Some(team.agents[0].0.clone());
        assert_eq!(team.assignee(&waiting).await, me, "the first in the queue");
        assert_eq!(team.assignee(&chatty).await, me);

        // Routing goes on from where the router stopped: a new request is taken at once.
        let next = team.request(2).await;
        eventually("the next request to be assigned", || async { team.assignee(&next).await.map(|_| ()) }).await;
    }
}

on_both_backends! {
    async fn a_transfer_is_not_an_assignment_and_requeues_without_initial_routing() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 1, 5).await;
        let c = team.request(1).await;
        let requested = team.events(&c, "conversation_requested").await;
        assert_eq!(requested[0]["data"]["reason"], "customer_message");
        let queued = team.events(&c, "conversation_queued").await;
        assert_eq!(queued[0]["data"]["initial_routing"], true);
        assert_eq!(queued[0]["data"]["group_id"], team.group.as_str());

        // Claimed by an agent outside the group: a transfer.
        let (s, _) = team.scene.assign_to_agent(&c).await;
        assert_eq!(s, StatusCode::OK);
        // Handed to the group, whose agent is online: back in the queue, then assigned from it.
        team.presence(0, "online").await;
        let (s, body) = team
            .scene
            .admin(Method::POST, &format!("/v1/conversations/{c}/assignment"), Some(json!({"group_id": team.group})))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        eventually("the group's agent to get it", || async {
            (team.assignee(&c).await.as_deref() == Some(team.agents[0].0.as_str())).then_some(())
        })
        .await;
        let all = team.scene.log_all(&format!("conversation_id={c}"), 100).await;
        let kinds: Vec<String> = types(&all)
            .into_iter()
            .filter(|k| ["conversation_transferred", "conversation_queued", "conversation_assigned"].contains(&k.as_str()))
            .collect();
        assert_eq!(
            kinds,
            ["conversation_queued", "conversation_transferred", "conversation_transferred", "conversation_queued", "conversation_assigned"],
        );
        let queued = team.events(&c, "conversation_queued").await;
        assert_eq!(queued[1]["data"]["initial_routing"], false);
        let assigned = team.events(&c, "conversation_assigned").await;
        assert_eq!(assigned[0]["data"]["assignee"]["id"], team.agents[0].0.as_str());
    }
}

on_both_backends! {
    async fn the_customer_sees_the_queue_position_fall_and_the_estimate_appear() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 1, 1).await;
        let (s, web) = team
            .scene
            .admin(Method::POST, "/v1/integrations", Some(json!({"name": "Widget", "type": "web", "default_group_id": team.group})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{web}");
        let ahead = [team.request(1).await, team.request(2).await];

        let (_, session) = sdk_session(&srv, web["id"].as_str().expect("id"), None, None).await;
        let token = session["session_token"].as_str().expect("token").to_string();
        let (_, started) = srv.call(&token, Method::POST, "/v1/sdk/conversations", Some(json!({}))).await;
        let mine = started["conversation"]["id"].as_str().expect("id").to_string();
        let mut socket = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
        socket.expect("hello").await;
        let (s, m) = srv
            .call(&token, Method::POST, &format!("/v1/sdk/conversations/{mine}/messages"), Some(json!({"content": {"type": "text", "text": "hello?"}})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        let frame = socket.expect("queue").await;
        assert_eq!((frame["conversation_id"].as_str(), frame["position"].as_i64()), (Some(mine.as_str()), Some(3)));
        assert_eq!(frame["estimated_wait"], Value::Null, "no estimate without history");

        // The agent comes online and takes the first; answering it gives the group history.
        team.presence(0, "online").await;
        let frame = socket.expect("queue").await;
        assert_eq!(frame["position"], 2);
        let (s, _) = team.scene.srv.call(&team.agents[0].1, Method::POST, &format!("/v1/conversations/{}/messages", ahead[0]), Some(json!({"content": {"type": "text", "text": "hello"}}))).await;
        assert_eq!(s, StatusCode::CREATED);
        let frame = socket.expect("queue").await;
        assert_eq!(frame["position"], 2);
        assert_eq!(frame["estimated_wait"]["min_minutes"], 0);
        assert!(frame["estimated_wait"]["max_minutes"].as_i64().is_some_and(|m| m <= 1), "{frame}");

        // Each end frees the agent's one place for the next in line.
        team.scene.set_status(&ahead[0], "ended").await;
        assert_eq!(socket.expect("queue").await["position"], 1);
        team.scene.set_status(&ahead[1], "ended").await;
        let frame = socket.expect("queue").await;
        assert_eq!(frame["position"], Value::Null, "assigned: out of the queue");
        assert_eq!(team.assignee(&mine).await.as_deref(), Some(team.agents[0].0.as_str()));
    }
}

on_both_backends! {
    async fn account_and_group_status_follow_the_rule_for_each_mix() {
        let srv = TestServer::start().await;
        // Capacity 0: nobody takes the waiting conversation, so the group stays in the view.
        let team = Team::new(&srv, "auto_accept", 2, 0).await;
        team.request(1).await;
        let mixes = [
            (["offline", "offline"], "invisible"),
            (["invisible", "offline"], "invisible"),
            (["away", "invisible"], "away"),
            (["away", "offline"], "away"),
            (["online", "away"], "online"),
            (["invisible", "online"], "online"),
            (["offline", "invisible"], "invisible"),
        ];
        for (statuses, expected) in mixes {
            team.presence(0, statuses[0]).await;
            team.presence(1, statuses[1]).await;
            let q = team.queue().await;
            assert_eq!(q["groups"][0]["status"], expected, "{statuses:?}");
            assert_eq!(q["account_status"], expected, "{statuses:?} (the scene's own agent is offline)");
        }
    }
}

on_both_backends! {
    async fn each_group_is_served_by_its_own_members() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 2, 5).await;
        // A second group with the second agent only, and its own integration.
        let (_, g2) = team
            .scene
            .admin(Method::POST, "/v1/groups", Some(json!({"name": "Sales", "agent_ids": [team.agents[1].0]})))
            .await;
        let (s, _) = team
            .scene
            .admin(Method::PUT, &format!("/v1/groups/{}/members", team.group), Some(json!({"agent_ids": [team.agents[0].0]})))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, sales) = team
            .scene
            .admin(Method::POST, "/v1/integrations", Some(json!({"name": "Sales", "type": "api", "default_group_id": g2["id"]})))
            .await;
        team.presence(1, "online").await;
        let support = team.request(1).await;
        let (_, c) = team
            .scene
            .admin(Method::POST, "/v1/conversations", Some(json!({"integration_id": sales["id"], "customer": {"external_id": "s"}})))
            .await;
        let sale = c["id"].as_str().expect("id").to_string();
        team.scene.customer_says(&sale, "a quote please").await;
        eventually("sales to be served", || async {
            (team.assignee(&sale).await.as_deref() == Some(team.agents[1].0.as_str())).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(team.assignee(&support).await, None, "an agent outside the group gets none of its queue");
        team.presence(0, "online").await;
        eventually("support to be served", || async {
            (team.assignee(&support).await.as_deref() == Some(team.agents[0].0.as_str())).then_some(())
        })
        .await;
    }
}

on_both_backends! {
    async fn a_group_capacity_limits_what_its_agents_take_together() {
        let srv = TestServer::start().await;
        let team = Team::new(&srv, "auto_accept", 2, 5).await;
        let path = format!("/v1/groups/{}", team.group);
        let (s, g) = team.scene.admin(Method::PATCH, &path, Some(json!({"capacity": 2}))).await;
        assert_eq!((s, g["capacity"].as_i64()), (StatusCode::OK, Some(2)), "{g}");
        let (s, bad) = team.scene.admin(Method::PATCH, &path, Some(json!({"capacity": -1}))).await;
        assert_eq!((s, bad["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("capacity")), "{bad}");
        team.all("online").await;
        for n in 0..4 {
            team.request(n).await;
        }
        eventually("two assignments", || async { (team.queue().await["queue_size"] == 2).then_some(()) }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(team.queue().await["queue_size"], 2, "the group limit holds though its agents have room");
        // Raising the limit routes at once (no event announces it: the schedule does).
        let (s, _) = team.scene.admin(Method::PATCH, &path, Some(json!({"capacity": null}))).await;
        assert_eq!(s, StatusCode::OK);
        eventually("the rest", || async { (team.queue().await["queue_size"] == 0).then_some(()) }).await;
    }
}
