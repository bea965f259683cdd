-- Kill exactly one mutation, named by its id (never "every pending mutation of the table").
KILL MUTATION
WHERE database = {db:String} AND table = {table:String} AND mutation_id = {mutation_id:String}
SYNC
