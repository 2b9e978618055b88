-- Every batch adds to the per-user daily sums of about as many users as it has records.
-- Pages kept half empty let those updates stay on their page without a new index entry
-- (heap-only tuples): the batch's upsert of them takes about half the time.
ALTER TABLE usage_user_1d SET (fillfactor = 50);
