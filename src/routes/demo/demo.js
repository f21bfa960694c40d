// The demo page: camera capture (camera.js), then the same API calls a client application
// makes.
"use strict";

const $ = (id) => document.getElementById(id);
let session = null; // { token, refreshToken, userId }

async function startCamera() {
  const problem = await openCamera($("video"));
  if (problem) {
    $("camera-status").textContent = problem;
    return;
  }
  $("camera-status").textContent = "Camera ready.";
  $("camera-status").dataset.ready = "true";
  $("enrol").disabled = false;
  $("login").disabled = false;
  $("login-live").disabled = false;
}

const capture = () => captureFrom($("video"));

async function withPhoto(fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
  form.append("face_image", await capture(), "camera.jpg");
  return form;
}

/// The claims of a JWT, for display: the page never trusts them, the server checks the token.
function claimsOf(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const json = decodeURIComponent(
    [...atob(part)].map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
  );
  return JSON.parse(json);
}

async function enrol(event) {
  event.preventDefault();
  show("busy", "Enrolling your face");
  const userId = $("enrol-user").value.trim();
  const body = await withPhoto({ user_id: userId, full_name: $("enrol-name").value.trim() });
  const done = await call("POST", "/register/", body);
  if (done) {
    show("success", `Enrolled ${done.user_id}. Now log in with your face.`);
    $("login-user").value = done.user_id;
  }
}

async function login(event) {
  event.preventDefault();
  show("busy", "Checking your face");
  const body = await withPhoto({ user_id: $("login-user").value.trim() });
  signIn(await call("POST", "/verify/", body));
}

/// A liveness login: fetch a challenge, show what to do, film it, send the frames.
async function liveLogin() {
  show("busy", "Preparing the liveness check");
  const challenge = await call("POST", "/liveness/challenge");
  if (!challenge) return;
  $("result").dataset.challenge = challenge.actions.join(",");
  const form = new FormData();
  const userId = $("login-user").value.trim();
  if (userId) form.append("user_id", userId);
  await filmChallenge(challenge, form, $("video"), (text) => show("busy", text));
  show("busy", "Checking the frames");
  signIn(await call("POST", "/verify/", form));
}

/// Shows the session a successful login started.
async function signIn(done) {
  if (!done) return;
  session = { token: done.token, refreshToken: done.refresh_token, userId: done.user_id };
  $("claims").textContent = JSON.stringify(claimsOf(done.token), null, 2);
  const me = await call("GET", "/users/me/", undefined, session.token);
  if (!me) return;
  $("me").textContent = JSON.stringify(me, null, 2);
  $("session").hidden = false;
  show("success", `Welcome, ${done.user_id} (similarity ${done.similarity.toFixed(1)}).`);
}

function endSession(message) {
  session = null;
  $("session").hidden = true;
  $("claims").textContent = "";
  $("me").textContent = "";
  $("delete").textContent = "Delete my account";
  delete $("delete").dataset.armed;
  show("idle", message);
}

async function logout() {
  const form = new URLSearchParams({ token: session.refreshToken });
  await call("POST", "/revoke", form);
  endSession("Logged out: the refresh token is revoked.");
}

/// Deletion needs a second click, so one slip does not delete an account.
async function deleteAccount() {
  const button = $("delete");
  if (!button.dataset.armed) {
    button.dataset.armed = "true";
    button.textContent = "Click again to delete your account and faces";
    return;
  }
  const done = await call("DELETE", `/users/${encodeURIComponent(session.userId)}/`, undefined, session.token);
  if (done) endSession(`Deleted ${done.user_id}: the faces are gone and the token is refused.`);
}

$("enrol-form").addEventListener("submit", enrol);
$("login-form").addEventListener("submit", login);
$("login-live").addEventListener("click", liveLogin);
$("logout").addEventListener("click", logout);
$("delete").addEventListener("click", deleteAccount);
startCamera();
