-- One step of a publish or rollback into the publish ledger (values bound).
INSERT INTO {publish_log} (at, token, action, step, generation, generation_open, good, source, source_uuid,
                           source_open, outcome)
VALUES (now64(6), {token:String}, {action:String}, {step:String}, {generation:String}, {generation_open:UInt64},
        {good:UInt8}, {source:String}, {source_uuid:String}, {source_open:UInt64}, {outcome:String})
