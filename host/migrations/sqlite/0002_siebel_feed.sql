-- Siebel change detection (host/src/dispatcher.rs): per business component, the `Updated`
-- cursor and the (Id, Mod Id) pairs already seen inside the overlap window, as JSON. Saved
-- only after the changes it covers were handed on, so a crash re-reads instead of skipping.
CREATE TABLE siebel_feed (
    component   TEXT PRIMARY KEY,        -- "BusObject/BusComp"
    state       TEXT NOT NULL,           -- JSON: {"cursor": "...", "seen": [...], ...}
    saved_at    TEXT NOT NULL
);
