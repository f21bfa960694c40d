// The demo page: camera capture, then the same API calls a client application makes.
"use strict";

// Every error code the API answers, as a sentence a person can act on.
const MESSAGES = {
  NO_FACE: "No face was found. Look straight at the camera, in good light, and try again.",
  MULTIPLE_FACES: "More than one face is in the picture. Only the person enrolling should be in view.",
  AMBIGUOUS_FACES: "Several faces of similar size are in view. Only you should be in the picture.",
  NO_MATCH: "This face does not match an enrolled user.",
  SMALL_BOUNDING_BOX: "Your face is too small in the picture. Move closer to the camera.",
  LOW_SHARPNESS: "The picture is blurred. Hold still and try again.",
  LOW_BRIGHTNESS: "The picture is too dark. Turn towards the light.",
  EXTREME_POSE: "Your head is turned too far. Look straight at the camera.",
  LOW_CONFIDENCE: "The camera picture does not clearly show a face.",
  LOW_FACE_QUALITY: "The face is not clear enough to enrol. Try better light and hold still.",
  INVALID_IMAGE: "The camera picture could not be read.",
  UNSUPPORTED_IMAGE: "The camera picture is not in a format the server accepts.",
  IMAGE_TOO_LARGE: "The camera picture is too large.",
  PAYLOAD_TOO_LARGE: "The camera picture is too large.",
  VALIDATION_ERROR: "Something in the form is not valid",
  USER_EXISTS: "That user id is taken. Choose another, or log in.",
  FACE_ALREADY_ENROLLED: "This face is already enrolled under another user id. Log in instead.",
  USER_NOT_FOUND: "There is no such user.",
  RATE_LIMITED: "Too many attempts from this device.",
  ACCOUNT_LOCKED: "Too many failed logins for this user id: it is locked for a while.",
  NOT_AUTHENTICATED: "You are not signed in.",
  INVALID_TOKEN: "Your session is not valid. Log in again.",
  TOKEN_EXPIRED: "Your session has expired. Log in again.",
  TOKEN_REVOKED: "Your session was ended. Log in again.",
  FORBIDDEN: "You may not do that.",
  UPSTREAM_AUTH: "The server cannot reach its face service (its credentials were refused).",
  ENGINE_UNAVAILABLE: "The face service is busy or down. Try again shortly.",
  INTERNAL: "The server failed. Try again; if it persists, quote the request id.",
  CHALLENGE_UNKNOWN: "The liveness check was not recognised. Start it again.",
  CHALLENGE_EXPIRED: "The liveness check took too long. Start it again.",
  CHALLENGE_USED: "This liveness check was already used. Start it again.",
  LIVENESS_FACE_CHANGED: "The face changed during the check. Only you should be in view; try again in good light.",
  LIVENESS_MOTION_MISSING: "The camera did not see your head move as asked. Start again and follow the instructions.",
  LIVENESS_FLAT: "The camera saw a flat picture move, not a head turn.",
  LIVENESS_REQUIRED: "This server requires the liveness check: use the liveness button.",
  LIVENESS_UNAVAILABLE: "This server's face engine cannot check liveness.",
};

/// How the page films a liveness answer: a frame at the start, then per motion, out and back.
const FRAME_INTERVAL_MS = 450;
const FRAMES_PER_MOTION = 3;

/// What each motion of a challenge asks, shown while it is filmed.
const MOTIONS = {
  turn_left: "Turn your head to your left, then back",
  turn_right: "Turn your head to your right, then back",
  tilt_left: "Tilt your head towards your left shoulder, then back",
  tilt_right: "Tilt your head towards your right shoulder, then back",
};

const $ = (id) => document.getElementById(id);
let session = null; // { token, refreshToken, userId }

/// A human sentence for an API error body (and its Retry-After, when the server sent one).
function explain(body, response) {
  let text = MESSAGES[body.code] || body.detail || `The server answered ${response.status}.`;
  if (body.code === "VALIDATION_ERROR" && body.detail) text += `: ${body.detail}`;
  const retry = response.headers.get("retry-after");
  if (retry) text += ` Try again in ${retry} s.`;
  return text;
}

function show(state, text, requestId) {
  $("result").dataset.state = state;
  $("result").dataset.code = "";
  $("message").textContent = text;
  $("request-id").textContent = requestId ? `request id ${requestId}` : "";
}

function showError(body, response) {
  show("error", explain(body, response), body.request_id || response.headers.get("x-request-id"));
  $("result").dataset.code = body.code || "";
}

async function startCamera() {
  const video = $("video");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("camera-status").textContent =
      "This browser gives pages no camera here. Open the page over https (or on localhost).";
    return;
  }
  try {
    // The front camera on phones; a portrait phone gets a portrait picture.
    video.srcObject = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    await video.play();
    if (!video.videoWidth) await new Promise((ok) => video.addEventListener("loadeddata", ok, { once: true }));
    $("camera-status").textContent = "Camera ready.";
    $("camera-status").dataset.ready = "true";
    $("enrol").disabled = false;
    $("login").disabled = false;
    $("login-live").disabled = false;
  } catch (e) {
    $("camera-status").textContent =
      e.name === "NotAllowedError"
        ? "The camera was not allowed. Allow it in the browser's site settings and reload."
        : `The camera could not start (${e.name}).`;
  }
}

/// The camera's current frame as a JPEG.
function capture() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((ok, fail) =>
    canvas.toBlob((blob) => (blob ? ok(blob) : fail(new Error("no frame"))), "image/jpeg", 0.92),
  );
}

/// Calls the API; returns the JSON body on success, or shows the error and returns null.
async function call(method, path, body, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(path, { method, body, headers });
  } catch (e) {
    show("error", "The server cannot be reached.", null);
    return null;
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(json, response);
    return null;
  }
  return json;
}

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
  form.append("challenge_id", challenge.challenge_id);
  const userId = $("login-user").value.trim();
  if (userId) form.append("user_id", userId);
  const perMotion = Math.min(
    FRAMES_PER_MOTION,
    Math.floor((challenge.max_frames - 1) / challenge.actions.length),
  );
  show("busy", "Look at the camera");
  await new Promise((ok) => setTimeout(ok, FRAME_INTERVAL_MS));
  form.append("frames", await capture(), "frame0.jpg");
  let taken = 1;
  for (const [step, action] of challenge.actions.entries()) {
    show("busy", `${step + 1} of ${challenge.actions.length}: ${MOTIONS[action] || action}.`);
    for (let i = 0; i < perMotion; i++) {
      await new Promise((ok) => setTimeout(ok, FRAME_INTERVAL_MS));
      form.append("frames", await capture(), `frame${taken}.jpg`);
      taken += 1;
    }
  }
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
