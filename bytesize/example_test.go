package bytesize_test

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-mail/portcullis/bytesize"
)

func Example() {
	var cfg struct {
		MaxMessageSize bytesize.Size `yaml:"max_message_size"`
		Quota          bytesize.Size `yaml:"quota"`
		MaxLineSize    bytesize.Size `yaml:"max_line_size"`
	}
	err := yaml.Unmarshal([]byte("max_message_size: 32MiB\nquota: 1.5 GiB\nmax_line_size: 4096\n"), &cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(int64(cfg.MaxMessageSize), cfg.MaxMessageSize)
	fmt.Println(int64(cfg.Quota), cfg.Quota)
	fmt.Println(int64(cfg.MaxLineSize), cfg.MaxLineSize)

	_, err = bytesize.Parse("32M")
	fmt.Println(err)
	// Output:
	// 33554432 32MiB
	// 1610612736 1536MiB
	// 4096 4KiB
	// size "32M": unit "M" could mean powers of 1000 or of 1024: write MB or MiB
}
