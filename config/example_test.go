package config_test

import (
	"fmt"

	"github.com/portcullis-mail/portcullis/config"
)

func Example() {
	rf, err := config.ParseRuleFile([]byte(`
rules:
  - name: exe
    if: any(msg.attachments, .executable)
    reject: 554 5.7.1 "no executables"
`), "rules.yaml", config.Deps{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(rf.Rules), "rule;", "built-in policies:", len(rf.Policies))
	// Output: 1 rule; built-in policies: 2
}
