-- The summary report (issue 10) reads a window of history: the booking steps and the feedback
-- recorded within it, found by time rather than by reading every booking's history.
CREATE INDEX booking_transition_at_idx ON booking_transition (at);
CREATE INDEX feedback_created_at_idx ON feedback (created_at);
