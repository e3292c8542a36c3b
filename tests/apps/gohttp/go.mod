module slim/gohttp

go 1.19
