// The hosted sign-in page of OpenID Connect: names the application that asks, films the user
// (camera.js) and posts the face to POST /authorize/{request}, then follows the answer back
// to the application. An operator's own page can do the same with the same two calls.
"use strict";

const $ = (id) => document.getElementById(id);
const request = new URLSearchParams(location.search).get("request");
const endpoint = `/authorize/${encodeURIComponent(request || "")}`;
let pending = null; // { client_name, liveness_required, login_hint }

function busy(on) {
  $("sign-in").disabled = on;
  $("decline").disabled = on;
}

async function load() {
  if (!request) {
    $("asking").textContent = "This page is opened by an application's sign-in link.";
    return;
  }
  pending = await call("GET", endpoint);
  if (!pending) {
    $("asking").textContent = "";
    return;
  }
  const asking = $("asking");
  asking.textContent = "";
  const name = document.createElement("strong");
  name.textContent = pending.client_name;
  asking.append(name, " asks you to sign in");
  if (pending.login_hint) asking.append(` as ${pending.login_hint}`);
  asking.append(".");
  if (pending.liveness_required) {
    $("sign-in").textContent = "Sign in with a liveness check";
    show("idle", "You will be asked to turn and tilt your head: follow the instructions.");
  }
  $("decline").disabled = false;
  const problem = await openCamera($("video"));
  if (problem) {
    $("camera-status").textContent = problem;
    return;
  }
  $("camera-status").textContent = "Camera ready.";
  $("camera-status").dataset.ready = "true";
  $("sign-in").disabled = false;
}

async function signIn() {
  busy(true);
  const form = new FormData();
  if (pending.liveness_required) {
    show("busy", "Preparing the liveness check");
    const challenge = await call("POST", "/liveness/challenge");
    if (!challenge) return busy(false);
    $("result").dataset.challenge = challenge.actions.join(",");
    await filmChallenge(challenge, form, $("video"), (text) => show("busy", text));
  } else {
    form.append("face_image", await captureFrom($("video")), "camera.jpg");
  }
  show("busy", "Checking your face");
  const done = await call("POST", endpoint, form);
  if (!done) return busy(false);
  show("success", "Signed in. Returning to the application.");
  location.assign(done.redirect_to);
}

async function decline() {
  busy(true);
  const done = await call("POST", `${endpoint}/decline`);
  if (!done) return busy(false);
  show("idle", "Cancelled. Returning to the application.");
  location.assign(done.redirect_to);
}

$("sign-in").addEventListener("click", signIn);
$("decline").addEventListener("click", decline);
load();
