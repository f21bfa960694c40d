-- Every face records the model that described it, so descriptors of different models are never
-- compared. Faces enrolled before this were described by the only model there was.
ALTER TABLE faces ADD COLUMN model TEXT NOT NULL DEFAULT '';
UPDATE faces SET model = 'dlib-resnet-v1@face-api-1.7.15' WHERE engine = 'local';
UPDATE faces SET model = 'rekognition' WHERE engine = 'rekognition';
