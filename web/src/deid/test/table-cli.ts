// Print the rules the unit tests resolve from the Annex E table for the options given as
// arguments (compared with the server's by tests/web/test_upload_deid.py).
import { rulesFromTable } from "./table";

console.log(JSON.stringify(rulesFromTable(process.argv.slice(2), "0".repeat(64))));
