// What the webcam pages share (the demo and the sign-in page): the sentences for the API's
// error codes, the result box (elements result, message and request-id), the API call that
// fills it, the camera, and the filming of a liveness challenge.
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
  AUTHORIZATION_UNKNOWN: "This sign-in has expired or was already used. Go back to the application and sign in again.",
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

/// A human sentence for an API error body (and its Retry-After, when the server sent one).
function explain(body, response) {
  let text = MESSAGES[body.code] || body.detail || `The server answered ${response.status}.`;
  if (body.code === "VALIDATION_ERROR" && body.detail) text += `: ${body.detail}`;
  const retry = response.headers.get("retry-after");
  if (retry) text += ` Try again in ${retry} s.`;
  return text;
}

/// Shows `text` in the result box, in `state` (idle, busy, success or error).
function show(state, text, requestId) {
  const result = document.getElementById("result");
  result.dataset.state = state;
  result.dataset.code = "";
  document.getElementById("message").textContent = text;
  document.getElementById("request-id").textContent = requestId ? `request id ${requestId}` : "";
}

/// Shows an API error body as a sentence, with its code and request id.
function showError(body, response) {
  show("error", explain(body, response), body.request_id || response.headers.get("x-request-id"));
  document.getElementById("result").dataset.code = body.code || "";
}

/// Calls the API (with a bearer `token`, when given); returns the JSON body on success, or
/// shows the error and returns null.
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

/// Starts the front camera in `video`; returns null when it runs, or why it does not.
async function openCamera(video) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser gives pages no camera here. Open the page over https (or on localhost).";
  }
  try {
    // The front camera on phones; a portrait phone gets a portrait picture.
    video.srcObject = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    await video.play();
    if (!video.videoWidth) await new Promise((ok) => video.addEventListener("loadeddata", ok, { once: true }));
    return null;
  } catch (e) {
    return e.name === "NotAllowedError"
      ? "The camera was not allowed. Allow it in the browser's site settings and reload."
      : `The camera could not start (${e.name}).`;
  }
}

/// The current frame of `video` as a JPEG.
function captureFrom(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((ok, fail) =>
    canvas.toBlob((blob) => (blob ? ok(blob) : fail(new Error("no frame"))), "image/jpeg", 0.92),
  );
}

/// Films the answer to `challenge` into `form` (a frame at the start, then each motion, out and
/// back), telling the person what to do through `say`.
async function filmChallenge(challenge, form, video, say) {
  form.append("challenge_id", challenge.challenge_id);
  const perMotion = Math.min(
    FRAMES_PER_MOTION,
    Math.floor((challenge.max_frames - 1) / challenge.actions.length),
  );
  say("Look at the camera");
  await new Promise((ok) => setTimeout(ok, FRAME_INTERVAL_MS));
  form.append("frames", await captureFrom(video), "frame0.jpg");
  let taken = 1;
  for (const [step, action] of challenge.actions.entries()) {
    say(`${step + 1} of ${challenge.actions.length}: ${MOTIONS[action] || action}.`);
    for (let i = 0; i < perMotion; i++) {
      await new Promise((ok) => setTimeout(ok, FRAME_INTERVAL_MS));
      form.append("frames", await captureFrom(video), `frame${taken}.jpg`);
      taken += 1;
    }
  }
}
