package milter_test

import (
	"fmt"
	"log/slog"

	"github.com/portcullis-mail/portcullis/milter"
	"github.com/portcullis-mail/portcullis/policy"
)

func Example() {
	rules, err := policy.ParseRules([]byte(`
rules:
  - name: no-exe
    if: msg.subject contains "invoice.exe"
    reject: 554 5.7.1 "executables are not accepted"
`), "rules.yaml")
	if err != nil {
		panic(err)
	}
	engine, err := policy.NewEngine(policy.EngineConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	srv, err := milter.New(milter.Config{}, milter.Deps{Engine: engine})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	// main.cf: smtpd_milters = inet:127.0.0.1:10041
	ln, err := milter.Listen("127.0.0.1:0", nil)
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	fmt.Println(ln.Addr().Network())
	// Output: tcp
}
