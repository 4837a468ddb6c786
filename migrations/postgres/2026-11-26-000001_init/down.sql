DROP TABLE track_points;
DROP TABLE last_values;
DROP TABLE read_markers;
DROP TABLE messages;
DROP TABLE channels;
DROP TABLE memberships;
DROP TABLE rooms;
DROP TABLE users;
