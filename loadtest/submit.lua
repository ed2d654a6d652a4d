-- wrk script: POST a typical submit body to whatever URL wrk is given.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"payload":{"operation":"uppercase","data":"hello"}}'
