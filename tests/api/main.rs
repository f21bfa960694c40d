mod fake_rekognition;
mod helpers;
